"""Lambda functions of the deploy stacks themselves (not the serving API): each module ships alone in a zip."""

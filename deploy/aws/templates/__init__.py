"""One module per CloudFormation stack; each builds its template as a dict from ResourceNames and AwsSettings."""

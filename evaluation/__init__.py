"""The Evaluate step's Processing script (ships alone into a container)."""

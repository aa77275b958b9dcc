"""The database layer of the REST resources: every SQL statement they run, parameterised."""

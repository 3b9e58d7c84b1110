"""The `callhook` command: serving, the database, mappings, agents, platforms."""

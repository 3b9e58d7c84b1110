"""The `callhook` command (`main`): serving, the database, mappings, agents, platforms."""

"""Read-only questions about stored calls, agents and health, asked by the operator
console, the agent page and the CLI.
"""

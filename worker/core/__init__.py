"""The shared core: settings, the database and its models, canonical events and the
call fold, and the small helpers every process uses (numbers, redaction, logs, metrics).
"""

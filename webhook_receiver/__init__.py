"""The web side of callhook: the Flask app (`web`), a delivery's way in (`deliveries`), the
mapping language (`mapping`), long-lived platform listeners (`listeners`) and the `callhook`
command (`cli`). See docs/architecture.md, "Where things live".
"""

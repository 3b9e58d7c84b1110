"""The Flask app: webhooks, agent pages, the HubSpot widget, the operator console, health and metrics; gunicorn's config."""

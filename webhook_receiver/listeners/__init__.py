"""Listeners: processes that hold a platform's event stream open instead of receiving webhooks.

Each one hands what it receives to ``webhook_receiver.deliveries.intake.ingest``, so a message is
mapped, stored, deduplicated and enqueued exactly as the same payload posted to
``/webhooks/<platform>`` would be. They run as their own Procfile process
(``listener: callhook listen kavkom``).
"""

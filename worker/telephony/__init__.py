"""Telephony platforms' API clients (click-to-call, directories, connections; one module or
family per platform) and `dialing`, the click-to-call policy that drives them."""

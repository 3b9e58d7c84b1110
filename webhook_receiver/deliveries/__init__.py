"""A delivery's way in: header auth, the durable store and the publish (`intake`), replays
of stored deliveries and previews of pasted ones (the console's sandbox).
"""

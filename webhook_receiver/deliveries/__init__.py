"""A delivery's way in: header auth, mapping into canonical events, the durable store and the publish, replays and previews of stored or pasted bodies."""

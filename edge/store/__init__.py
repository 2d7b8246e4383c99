"""The store stage: vehicle events and interval counts kept in SQLite, and the queries on them.

It consumes the vehicle events the track stage emits (any object shaped like
`edge.track.events.VehicleEvent`, see `database.StoredEvent`) through the event bus, like the
other sinks, and answers the counts and events queries that edge/app.py hands to the web layer.
"""

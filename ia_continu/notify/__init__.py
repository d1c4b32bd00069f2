"""Notifications: Discord embeds and sender (``discord``), and the outbox for what Discord
could not take in time (``outbox``)."""

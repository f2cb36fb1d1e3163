"""Twitch chat over IRC-on-websocket: ``protocol`` (pure) and ``client`` (asyncio)."""

"""YouTube live chat via the web client's innertube polling API: ``protocol`` (pure) and ``client`` (asyncio)."""

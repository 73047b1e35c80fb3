"""std.http's own HTTP/1.1 client over asyncio: wire (one connection), pool (connections per origin), client."""

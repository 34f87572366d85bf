"""The env-host contract in code: routes, messages, autoreset names and the error
vocabulary. ``docs/protocol.md`` is its prose twin."""

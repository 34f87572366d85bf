"""The env-host contract in code, used by the server and every client alike.

``routes`` (route names), ``fields`` (field names), ``requests`` (request builders and
parsers), ``answers`` (answer builders and readers), ``autoreset`` (autoreset mode names),
``errors`` (the error vocabulary), ``keys`` (how a caller shows its API key) and
``openapi`` (all of it as an OpenAPI 3.1 document). ``docs/protocol.md`` is its prose
twin.
"""

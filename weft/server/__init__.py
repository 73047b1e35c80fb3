"""`weft serve`: the REST API (/api/v1), live event streams and the web console, over the Client.

The server holds no use-case logic of its own: every operation is a Client
call (weft.client). app.py builds the FastAPI application; auth.py the
tokens, sessions and forgery checks; problems.py maps every error to an RFC
9457 problem; catalog.py compiles the served flows; stream.py follows the
store's feed; console.py serves the HTML pages.
"""

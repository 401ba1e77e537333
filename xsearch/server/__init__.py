"""`xsearch serve`: an HTTP JSON API and a web page over one index.

`app.create_app(index)` builds the Starlette application; `catalog` looks assets and items up
by id (the only way a request names a file), `uploads` receives query files, `media` draws
thumbnails, and `static/` holds the page (plain HTML, CSS and JavaScript, nothing fetched from
the internet).
"""

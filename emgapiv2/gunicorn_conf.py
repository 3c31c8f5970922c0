"""gunicorn settings for every way the API is served (`scripts/services.sh`, the app image):
`gunicorn -c python:emgapiv2.gunicorn_conf emgapiv2.wsgi`."""

import gunicorn.http.wsgi

# No version banner: "Server: gunicorn/23.0.0" tells a scanner which known flaws to try. gunicorn
# reads this name when it builds each response, so setting it here (in the master, before the
# workers fork) is enough.
gunicorn.http.wsgi.SERVER = "emgapi"

"""Server-rendered pages that are not part of signing in: for now, the home page."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from devspace_server.auth import csrf, sessions

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def home() -> BaseResponse:
    """Who is signed in, with a sign-out button; the sign-in page for everyone else."""
    user = sessions.current_user()
    if user is None:
        return redirect(url_for("local.login_form"), 303)
    html = render_template("home.html", user=user, csrf_field=csrf.FIELD, csrf_token=csrf.token())
    return Response(html, mimetype="text/html")

"""order-service: the sample app of `make demo` (dorgu generate reads this directory; it is never run)."""

from flask import Flask

app = Flask(__name__)


@app.route("/healthz")
def healthz() -> str:
    return "ok"


@app.route("/ready")
def ready() -> str:
    return "ok"


@app.route("/orders")
def orders() -> list[dict[str, str]]:
    return []

"""The application ban-agent protects: a FastAPI service whose /login and /register are
brute-forced. It logs one line per request to those two endpoints, in the format the
shipped `fastapi-auth` filter reads:

    2026-11-25 12:00:00,001 - fastapi-auth - INFO - 203.0.113.7 - "POST /login" 401 - 0.0087s

Run it with `python app.py` (the venv made by venv.sh). Settings come from the environment:
ACCESS_LOG (default /var/log/fastapi-auth/access.log), HOST (default: every IPv4 and
IPv6 address) and PORT (8000).
"""

import logging
import logging.handlers
import os
import re
import secrets
import time

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

ACCESS_LOG = os.environ.get("ACCESS_LOG", "/var/log/fastapi-auth/access.log")
AUDITED = ("/login", "/register")

logger = logging.getLogger("fastapi-auth")


def setup_logging(path: str) -> None:
    """The standard set-up: a file handler on the access log plus a stream handler.

    WatchedFileHandler, not FileHandler: it reopens the file when logrotate's `create`
    puts a new one at the path, where a plain FileHandler keeps writing to the renamed
    file (ban-agent follows that one too, for a while: see the README's "Log rotation").
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    for handler in (logging.handlers.WatchedFileHandler(path), logging.StreamHandler()):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Credentials(BaseModel):
    username: str
    password: str


# A small in-memory user store with one known test user.
USERS: dict[str, str] = {"alice": "correct horse battery staple"}
USERNAME = re.compile(r"^[a-z0-9_]{3,32}$")

app = FastAPI(title="fastapi-auth example")


@app.exception_handler(RequestValidationError)
async def invalid_input(request: Request, error: RequestValidationError) -> JSONResponse:
    """Malformed input is a 400 (FastAPI's default is 422), as /register promises."""
    return JSONResponse(status_code=400, content={"detail": jsonable_encoder(error.errors())})


@app.middleware("http")
async def access_log(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    path = request.url.path
    # Only the two exact paths are logged, so nothing the client sends (a path with an
    # encoded line break, a query) reaches the log line. The address is the TCP peer,
    # the one XDP sees; X-Forwarded-For is not trusted (see main()).
    if path in AUDITED:
        client = request.client.host if request.client else "-"
        logger.info(
            '%s - "%s %s" %d - %.4fs',
            client,
            request.method,
            path,
            response.status_code,
            time.perf_counter() - started,
        )
    return response


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/login")
async def login(credentials: Credentials) -> dict:
    expected = USERS.get(credentials.username)
    if expected is None or not secrets.compare_digest(expected, credentials.password):
        raise HTTPException(status_code=401, detail="invalid username or password")
    return {"token": secrets.token_urlsafe(32), "token_type": "bearer"}


@app.post("/register", status_code=201)
async def register(credentials: Credentials) -> dict:
    if not USERNAME.match(credentials.username):
        raise HTTPException(status_code=400, detail="username: 3 to 32 of a-z, 0-9, _")
    if len(credentials.password) < 12:
        raise HTTPException(status_code=400, detail="password: at least 12 characters")
    if credentials.username in USERS:
        raise HTTPException(status_code=400, detail="username already taken")
    USERS[credentials.username] = credentials.password
    return {"username": credentials.username}


def main() -> None:
    setup_logging(ACCESS_LOG)
    uvicorn.run(
        app,
        # "" is every address of both families; "::" would be IPv6 only (asyncio sets
        # IPV6_V6ONLY).
        host=os.environ.get("HOST", ""),
        port=int(os.environ.get("PORT", "8000")),
        # The logged address must be the packet's source: a forwarded header is the
        # client's to forge, and banning it would ban someone else.
        proxy_headers=False,
        access_log=False,
    )


if __name__ == "__main__":
    main()

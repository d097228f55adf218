"""Language, framework, service dependencies and health endpoints from an app's source.

Language precedence (the first manifest found in the app directory wins; a repo often carries a secondary
``package.json`` for assets, so Node.js comes last):

    go.mod > Cargo.toml > pom.xml > build.gradle(.kts) > *.csproj/*.fsproj > Gemfile > composer.json
    > Python (pyproject.toml, requirements.txt, setup.py, Pipfile) > package.json

Framework: the first of a fixed, ordered list that the manifest declares (so ``@nestjs/core`` beats
``express``, ``next`` beats ``react``). Dependencies: sorted, de-duplicated service kinds.
Health endpoints: only routes the framework really serves with GET, from the route finder
(:mod:`cli.analyzer.routes`), chosen by :mod:`cli.analyzer.probes`; never a quoted string that merely looks
like a path.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.model import CodeInfo
from cli.analyzer.probes import choose
from cli.analyzer.routes import Route, find_routes, finder_for
from cli.analyzer.walk import read_text, source_files

SOURCE_EXTENSIONS = frozenset(
    {".py", ".js", ".mjs", ".cjs", ".ts", ".go", ".rb", ".java", ".kt", ".rs", ".php", ".cs", ".fs"}
)

_NODE_FRAMEWORKS = (
    ("@nestjs/core", "nestjs"), ("next", "nextjs"), ("nuxt", "nuxt"), ("@remix-run/node", "remix"),
    ("express", "express"), ("fastify", "fastify"), ("koa", "koa"), ("@hapi/hapi", "hapi"), ("hapi", "hapi"),
    ("gatsby", "gatsby"), ("@angular/core", "angular"), ("vue", "vue"), ("react", "react"),
)  # fmt: skip
_NODE_DEPS = {
    "pg": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mysql2": "mysql",
    "mongodb": "mongodb",
    "mongoose": "mongodb",
    "redis": "redis",
    "ioredis": "redis",
    "kafkajs": "kafka",
    "amqplib": "rabbitmq",
    "@elastic/elasticsearch": "elasticsearch",
    "@prisma/client": "database",
    "typeorm": "database",
}
_PY_FRAMEWORKS = (
    ("django", "django"), ("fastapi", "fastapi"), ("flask", "flask"), ("starlette", "starlette"),
    ("tornado", "tornado"), ("aiohttp", "aiohttp"), ("sanic", "sanic"),
)  # fmt: skip
_PY_DEPS = {
    "psycopg2": "postgresql",
    "psycopg2-binary": "postgresql",
    "psycopg": "postgresql",
    "asyncpg": "postgresql",
    "pymysql": "mysql",
    "mysqlclient": "mysql",
    "pymongo": "mongodb",
    "motor": "mongodb",
    "redis": "redis",
    "kafka-python": "kafka",
    "confluent-kafka": "kafka",
    "pika": "rabbitmq",
    "celery": "redis",
    "elasticsearch": "elasticsearch",
}
_GO_FRAMEWORKS = (
    ("github.com/gin-gonic/gin", "gin"), ("github.com/labstack/echo", "echo"),
    ("github.com/gofiber/fiber", "fiber"), ("github.com/go-chi/chi", "chi"),
    ("github.com/gorilla/mux", "gorilla"), ("github.com/beego/beego", "beego"),
)  # fmt: skip
_GO_DEPS = {
    "github.com/lib/pq": "postgresql",
    "github.com/jackc/pgx": "postgresql",
    "github.com/go-sql-driver/mysql": "mysql",
    "go.mongodb.org/mongo-driver": "mongodb",
    "github.com/redis/go-redis": "redis",
    "github.com/go-redis/redis": "redis",
    "github.com/segmentio/kafka-go": "kafka",
    "github.com/streadway/amqp": "rabbitmq",
    "github.com/rabbitmq/amqp091-go": "rabbitmq",
}
_JVM_FRAMEWORKS = (("spring-boot", "spring-boot"), ("quarkus", "quarkus"), ("micronaut", "micronaut"))
_JVM_DEPS = {
    "postgresql": "postgresql",
    "mysql-connector": "mysql",
    "mariadb-java-client": "mysql",
    "spring-boot-starter-data-mongodb": "mongodb",
    "spring-boot-starter-data-redis": "redis",
    "jedis": "redis",
    "kafka-clients": "kafka",
    "spring-kafka": "kafka",
    "spring-boot-starter-amqp": "rabbitmq",
}
_RUBY_FRAMEWORKS = (("rails", "rails"), ("sinatra", "sinatra"), ("hanami", "hanami"))
_RUBY_DEPS = {
    "pg": "postgresql",
    "mysql2": "mysql",
    "mongoid": "mongodb",
    "redis": "redis",
    "sidekiq": "redis",
    "bunny": "rabbitmq",
    "ruby-kafka": "kafka",
}
_RUST_FRAMEWORKS = (("axum", "axum"), ("actix-web", "actix-web"), ("rocket", "rocket"), ("warp", "warp"))
_RUST_DEPS = {
    "sqlx": "database",
    "tokio-postgres": "postgresql",
    "diesel": "database",
    "redis": "redis",
    "mongodb": "mongodb",
    "rdkafka": "kafka",
    "lapin": "rabbitmq",
}
_PHP_FRAMEWORKS = (
    ("laravel/framework", "laravel"), ("symfony/framework-bundle", "symfony"), ("slim/slim", "slim"),
    ("laminas/laminas-mvc", "laminas"),
)  # fmt: skip
_PHP_DEPS = {
    "predis/predis": "redis",
    "doctrine/orm": "database",
    "php-amqplib/php-amqplib": "rabbitmq",
    "mongodb/mongodb": "mongodb",
}
_DOTNET_DEPS = {
    "Npgsql": "postgresql",
    "Npgsql.EntityFrameworkCore.PostgreSQL": "postgresql",
    "MySqlConnector": "mysql",
    "Pomelo.EntityFrameworkCore.MySql": "mysql",
    "MongoDB.Driver": "mongodb",
    "StackExchange.Redis": "redis",
    "RabbitMQ.Client": "rabbitmq",
    "Confluent.Kafka": "kafka",
    "Microsoft.EntityFrameworkCore.SqlServer": "sqlserver",
}

_PY_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _first(declared: set[str], table: tuple[tuple[str, str], ...]) -> str:
    return next((fw for key, fw in table if key in declared), "")


def _deps(declared: set[str], table: dict[str, str], *, prefix: bool = False) -> list[str]:
    found = set()
    for key, dep in table.items():
        if key in declared or (prefix and any(d.startswith(key) for d in declared)):
            found.add(dep)
    return sorted(found)


def _norm_py(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _python(root: Path) -> tuple[set[str], str]:
    declared: set[str] = set()
    manifest = ""
    for fname in ("pyproject.toml", "requirements.txt", "setup.py", "Pipfile"):
        text = read_text(root / fname, what=fname)
        if text is None:
            continue
        manifest = manifest or fname
        if fname == "requirements.txt":
            for line in text.splitlines():
                m = _PY_REQ_NAME.match(line.split("#", 1)[0])
                if m and not line.lstrip().startswith("-"):
                    declared.add(_norm_py(m.group(1)))
        elif fname in ("pyproject.toml", "Pipfile"):
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                doc = {}
            reqs = list(doc.get("project", {}).get("dependencies", []))
            poetry = doc.get("tool", {}).get("poetry", {}).get("dependencies", {})
            reqs += list(poetry) + list(doc.get("packages", {}))
            for r in reqs:
                m = _PY_REQ_NAME.match(str(r))
                if m:
                    declared.add(_norm_py(m.group(1)))
        else:
            for m in re.finditer(r"""["']([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:[<>=!~\[][^"']*)?["']""", text):
                declared.add(_norm_py(m.group(1)))
    return declared, manifest


def _detect(root: Path) -> tuple[str, str, str, list[str], set[str]]:
    """(language, framework, manifest, dependencies, declared names)."""
    if (text := read_text(root / "go.mod", what="go.mod")) is not None:
        declared = set(re.findall(r"^\s*(?:require\s+)?([a-z0-9.\-]+\.[a-z]+/[^\s]+)\s+v", text, re.M))
        declared = {re.sub(r"/v\d+$", "", d) for d in declared}
        return (
            "go",
            _first(declared, _GO_FRAMEWORKS),
            "go.mod",
            _deps(declared, _GO_DEPS, prefix=True),
            declared,
        )
    if (text := read_text(root / "Cargo.toml", what="Cargo.toml")) is not None:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            doc = {}
        declared = set(doc.get("dependencies", {}))
        return "rust", _first(declared, _RUST_FRAMEWORKS), "Cargo.toml", _deps(declared, _RUST_DEPS), declared
    for fname in ("pom.xml", "build.gradle.kts", "build.gradle"):
        if (text := read_text(root / fname, what=fname)) is not None:
            if fname == "pom.xml":
                declared = set(re.findall(r"<artifactId>\s*([^<\s]+)\s*</artifactId>", text))
            else:
                declared = set(re.findall(r"""["'][\w.\-]+:([\w.\-]+)(?::[^"']*)?["']""", text))
                declared |= set(re.findall(r"""id\s*\(?\s*["']([\w.\-]+)["']""", text))
            lang = "java"
            if "kotlin(" in text or "org.jetbrains.kotlin" in text:
                lang = "kotlin"
            fw = next((f for key, f in _JVM_FRAMEWORKS if any(key in d for d in declared)), "")
            deps = sorted({dep for key, dep in _JVM_DEPS.items() if any(key in d for d in declared)})
            return lang, fw, fname, deps, declared
    projects = sorted(root.glob("*.csproj")) + sorted(root.glob("*.fsproj"))
    if projects:
        text = read_text(projects[0], what="project file") or ""
        declared = set(re.findall(r'<PackageReference\s+Include="([^"]+)"', text))
        web = "Microsoft.NET.Sdk.Web" in text
        lang = "fsharp" if projects[0].suffix == ".fsproj" else "csharp"
        return lang, "aspnetcore" if web else "", projects[0].name, _deps(declared, _DOTNET_DEPS), declared
    if (text := read_text(root / "Gemfile", what="Gemfile")) is not None:
        declared = set(re.findall(r"""^\s*gem\s+["']([^"']+)["']""", text, re.M))
        return "ruby", _first(declared, _RUBY_FRAMEWORKS), "Gemfile", _deps(declared, _RUBY_DEPS), declared
    if (text := read_text(root / "composer.json", what="composer.json")) is not None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = {}
        declared = set(doc.get("require", {}) if isinstance(doc, dict) else {})
        return "php", _first(declared, _PHP_FRAMEWORKS), "composer.json", _deps(declared, _PHP_DEPS), declared
    declared, manifest = _python(root)
    if manifest:
        return "python", _first(declared, _PY_FRAMEWORKS), manifest, _deps(declared, _PY_DEPS), declared
    if (text := read_text(root / "package.json", what="package.json")) is not None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        declared = set(doc.get("dependencies") or {})
        dev = set(doc.get("devDependencies") or {})
        ts = "typescript" in declared | dev or (root / "tsconfig.json").exists() or "@nestjs/core" in declared
        lang = "typescript" if ts else "javascript"
        fw = _first(declared, _NODE_FRAMEWORKS)
        return lang, fw, "package.json", _deps(declared, _NODE_DEPS), declared
    return "unknown", "", "", [], set()


def analyze_code(root: Path, *, on_unreadable: Callable[[Path, str], None], prefix: str = "") -> CodeInfo:
    """``prefix``: ``root`` relative to the app directory (a compose build context), put in front of the
    origins so that they name files from the app directory."""
    language, framework, manifest, deps, _declared = _detect(root)
    info = CodeInfo(language=language, framework=framework, manifest=manifest, dependencies=deps)
    for _path, _text in source_files(root, extensions=SOURCE_EXTENSIONS, on_unreadable=on_unreadable):
        info.files_scanned += 1
    info.route_finder = finder_for(framework, language=language) or ""
    routes = find_routes(root, framework, language=language, on_unreadable=on_unreadable)
    info.routes = [f"{r.method} {r.path}" for r in routes]
    if any(r.path == "/metrics" and r.serves_get for r in routes):
        info.metrics_path = "/metrics"
    chosen = choose(routes)

    def origin(r: Route) -> str:
        return f"{prefix.rstrip('/')}/{r.where}" if prefix and prefix != "." else r.where

    if chosen.liveness is not None:
        info.health_path, info.health_origin = chosen.liveness.path, origin(chosen.liveness)
    if chosen.readiness is not None:
        info.readiness_path, info.readiness_origin = chosen.readiness.path, origin(chosen.readiness)
    return info

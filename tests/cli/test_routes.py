"""The route finder (cli.analyzer.routes): on the fixture apps (Spring, ASP.NET and Go are checked here only,
no JVM/.NET/Go toolchain runs them) and on small apps for each rule — prefixes applied, methods respected,
comments, tests, front-end code and unmounted routers ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.analyzer.code import analyze_code
from cli.analyzer.probes import choose
from cli.analyzer.routes import Route, find_routes, finder_for, serves_get
from cli.analyzer.routes.model import join
from cli.analyzer.routes.sources import blank_comments, is_server_code
from tests.cli.conftest import APPS


def _get(routes: list[Route]) -> list[str]:
    return sorted(r.path for r in routes if r.serves_get)


def _app(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


# --------------------------------------------------------------------------- the fixture apps

FIXTURES = {
    # app: (framework, GET paths served, liveness origin, (liveness, readiness))
    "flask": (
        "flask", ["/api/v1/health", "/api/v1/ready"], "shop/api.py:9", ("/api/v1/health", "/api/v1/ready")
    ),
    "fastapi": (
        "fastapi", ["/api/v1/health", "/api/v1/orders/"], "orders/routers/health.py:7", ("/api/v1/health", "")
    ),
    "django": (
        "django", ["/api/healthz/", "/api/ready/"], "health/urls.py:6", ("/api/healthz/", "/api/ready/")
    ),
    "express": (
        "express", ["/api/healthz", "/api/ready", "/metrics"], "routes/api.js:5",
        ("/api/healthz", "/api/ready"),
    ),
    "spring-maven": (
        "spring-boot",
        ["/actuator/health/liveness", "/actuator/health/readiness", "/api/inventory", "/api/inventory/ping"],
        "pom.xml:12",
        ("/actuator/health/liveness", "/actuator/health/readiness"),
    ),
    "gradle-kotlin": ("spring-boot", ["/ping"], "src/main/kotlin/Health.kt:3", ("/ping", "")),
    "aspnet": ("aspnetcore", ["/api/weather", "/healthz", "/ready"], "Program.cs:9", ("/healthz", "/ready")),
    "go-gin": ("gin", ["/api/v1/healthz", "/readyz"], "main.go:14", ("/api/v1/healthz", "/readyz")),
    "nestjs": (
        "nestjs", ["/health/live", "/health/ready"], "src/health.controller.ts:5",
        ("/health/live", "/health/ready"),
    ),
    "monorepo/services/billing": ("starlette", ["/healthz"], "billing/__init__.py:10", ("/healthz", "")),
    "rails": ("rails", ["/healthz", "/up"], "config/routes.rb:3", ("/healthz", "")),
    "php-laravel": ("laravel", ["/health"], "routes/web.php:2", ("/health", "")),
    "rust-axum": ("axum", ["/health"], "src/main.rs:5", ("/health", "")),
    "compose-app/web": ("fastify", ["/status"], "", ("", "")),  # /status is no health name: compose's wins
}  # fmt: skip


@pytest.mark.parametrize("app", sorted(FIXTURES))
def test_fixture_routes_and_probes(app: str) -> None:
    framework, served, origin, (live, ready) = FIXTURES[app]
    info = analyze_code(APPS / app, on_unreadable=lambda p, r: pytest.fail(f"{p}: {r}"))
    assert info.framework == framework
    routes = find_routes(APPS / app, framework, language=info.language)
    assert _get(routes) == served
    assert (info.health_path, info.readiness_path, info.health_origin) == (live, ready, origin)


def test_spring_class_mapping_and_methods() -> None:
    routes = find_routes(APPS / "spring-maven", "spring-boot")
    assert serves_get(routes, "/ping") is None, "the class-level @RequestMapping prefix was dropped"
    assert serves_get(routes, "/api/inventory/ping") is not None
    assert serves_get(routes, "/api/inventory/health") is None, "a @PostMapping is not a GET route"
    assert serves_get(routes, "/healthz") is None and serves_get(routes, "/health") is None  # comments
    assert not any("{" in r.path for r in routes)  # /items/{id} cannot be probed


def test_frameworks_without_a_finder_give_no_routes(tmp_path: Path) -> None:
    app = _app(tmp_path, {"app.rb": "get '/healthz' do\n  'ok'\nend\n"})
    assert finder_for("sinatra") is None and find_routes(app, "sinatra") == []
    assert finder_for("", language="go") == "go"


def test_rails_scopes(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "config/routes.rb": "Rails.application.routes.draw do\n"
            '  get "up" => "rails/health#show", as: :rails_health_check\n'
            "  # get '/healthz', to: 'old#show'\n"
            "  namespace :api do\n"
            '    scope path: "/v1" do\n'
            '      get "health", to: "health#show"\n'
            '      match "ready", to: "health#ready", via: [:post]\n'
            "    end\n"
            "    resources :orders do\n"
            '      get "status"\n'
            "    end\n"
            "  end\n"
            '  root "pages#home"\n'
            "end\n",
        },
    )
    assert _get(find_routes(app, "rails")) == ["/", "/api/v1/health", "/up"]


def test_laravel_files_groups_and_health(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "routes/web.php": "<?php\nRoute::get('/', fn () => view('welcome'));\n"
            "// Route::get('/healthz', fn () => 'ok');\n",
            "routes/api.php": "<?php\nRoute::prefix('v1')->group(function () {\n"
            "    Route::get('/health', fn () => 'ok');\n    Route::post('/ready', fn () => 'ok');\n});\n"
            "Route::match(['get', 'head'], '/ping', fn () => 'pong');\n",
            "bootstrap/app.php": "<?php\nreturn Application::configure()\n"
            "    ->withRouting(web: __DIR__.'/../routes/web.php', health: '/up')->create();\n",
        },
    )
    assert _get(find_routes(app, "laravel")) == ["/", "/api/ping", "/api/v1/health", "/up"]


def test_fastify_root_instance_only(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "server.js": "const app = require('fastify')();\napp.get('/livez', h);\n"
            "app.route({ method: ['GET', 'HEAD'], url: '/readyz', handler: h });\n"
            "app.register(require('./api'), { prefix: '/api' });\n",
            "api.js": "module.exports = async function (fastify) { fastify.get('/health', h); };\n",
        },
    )
    assert _get(find_routes(app, "fastify")) == ["/livez", "/readyz"]  # /api/health's prefix is not read


def test_axum_nest(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "src/main.rs": "fn api() -> Router {\n"
            '    Router::new().route("/health", get(h)).route("/hook", post(h))\n}\n'
            "#[tokio::main]\nasync fn main() {\n"
            '    let ops = Router::new().route("/livez", get(|| async { "ok" }));\n'
            '    let app = Router::new().route("/", get(h)).nest("/api", api()).nest("/ops", ops);\n'
            '    // .route("/healthz", get(h))\n}\n',
        },
    )
    assert _get(find_routes(app, "axum")) == ["/", "/api/health", "/ops/livez"]


# --------------------------------------------------------------------------- rules, one small app each


def test_flask_registration_prefix_replaces_the_blueprints(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "app.py": "from flask import Flask\nfrom views import a, b, lost\napp = Flask(__name__)\n"
            "app.register_blueprint(a)\napp.register_blueprint(b, url_prefix='/v2')\n",
            "views.py": "from flask import Blueprint\na = Blueprint('a', __name__, url_prefix='/a')\n"
            "b = Blueprint('b', __name__, url_prefix='/b')\nlost = Blueprint('lost', __name__)\n"
            "@a.route('/health')\ndef h(): ...\n@b.get('/health')\ndef h2(): ...\n"
            "@lost.get('/healthz')\ndef h3(): ...\n@a.route('/hook', methods=['POST'])\ndef h4(): ...\n",
        },
    )
    routes = find_routes(app, "flask")
    assert _get(routes) == ["/a/health", "/v2/health"]  # `lost` is never registered
    assert [r.method for r in routes if r.path == "/a/hook"] == ["POST"]


def test_fastapi_include_prefix_goes_before_the_routers(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "main.py": "from fastapi import FastAPI\nfrom api import outer\napp = FastAPI()\n"
            "app.include_router(outer, prefix='/api')\n",
            "api.py": "from fastapi import APIRouter\nouter = APIRouter(prefix='/v1')\n"
            "inner = APIRouter(prefix='/sys')\n"
            "@inner.get('/health')\ndef h(): ...\n@inner.api_route('/ready', methods=['POST'])\n"
            "def r(): ...\n"
            "outer.include_router(inner)\n",
        },
    )
    assert _get(find_routes(app, "fastapi")) == ["/api/v1/sys/health"]


def test_django_include_regex_and_method_decorators(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "site/settings.py": "ROOT_URLCONF = 'site.urls'\n",
            "site/urls.py": "from django.urls import include, path, re_path\nfrom ops import views\n"
            "urlpatterns = [\n"
            "    path('ops/', include('ops.urls')),\n    re_path(r'^ping/?$', views.ping),\n]\n",
            "ops/urls.py": "from django.urls import path\nfrom . import views\nurlpatterns = [\n"
            "    path('healthz', views.healthz),\n    path('hook/', views.hook),\n"
            "    path('get-only', views.only_get),\n]\n",
            "ops/views.py": "from django.views.decorators.http import require_http_methods, require_POST\n"
            "def healthz(r): ...\ndef ping(r): ...\n@require_POST\ndef hook(r): ...\n"
            "@require_http_methods(['GET'])\ndef only_get(r): ...\n",
            "other/urls.py": "from django.urls import path\nurlpatterns = [path('stray/', None)]\n",
        },
    )
    assert _get(find_routes(app, "django")) == ["/ops/get-only", "/ops/healthz", "/ping/"]


def test_express_mounts_across_files_and_module_kinds(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "src/index.js": "import express from 'express';\nimport v1 from './routes/v1.js';\n"
            "const app = express();\napp.use('/api/v1', auth, v1);\n"
            "app.use('/ops', require('./routes/ops'));\n/* app.get('/old-health', h); */\n"
            "app.get('env');\n",
            "src/routes/v1.js": "import { Router } from 'express';\nconst r = Router();\n"
            "r.get('/health', h);\nr.post('/ready', h);\nexport default r;\n",
            "src/routes/ops.js": "const express = require('express');\nconst router = express.Router();\n"
            "const nested = express.Router();\nnested.get('/livez', h);\nrouter.use('/sys', nested);\n"
            "router.route('/ready').get(h).post(h);\nmodule.exports = router;\n",
            "src/routes/unused.js": "const router = require('express').Router();\n"
            "router.get('/healthz', h);\n",
            "src/routes/health.test.js": "app.get('/status', h);\n",
            "client/src/App.js": "const app = express();\napp.get('/api/health', h);\n",
        },
    )
    assert _get(find_routes(app, "express")) == ["/api/v1/health", "/ops/ready", "/ops/sys/livez"]


def test_nestjs_global_prefix_and_controller_paths(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "src/main.ts": "const app = await NestFactory.create(AppModule);\napp.setGlobalPrefix('api');\n",
            "src/health.controller.ts": "@Controller({ path: 'health' })\nexport class HealthController {\n"
            "  @Get()\n  check() {}\n  @Post('ready')\n  ready() {}\n}\n",
        },
    )
    assert _get(find_routes(app, "nestjs")) == ["/api/health"]


def test_spring_kotlin_methods_context_path_and_actuator_settings(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "build.gradle.kts": "dependencies {\n"
            '    implementation("org.springframework.boot:spring-boot-starter-actuator")\n}\n',
            "src/main/resources/application.yml": "server:\n  servlet:\n    context-path: /inv\n"
            "management:\n  endpoints:\n    web:\n      base-path: /manage\n",
            "src/main/kotlin/Ops.kt": '@RestController\n@RequestMapping(value = ["/ops"])\nclass Ops {\n'
            '    @RequestMapping("/a", method = [RequestMethod.POST])\n    fun a() = "x"\n'
            '    @RequestMapping(path = ["/b"])\n    fun b() = "x"\n}\n'
            'class Plain {\n    @GetMapping("/not-a-controller")\n    fun c() = "x"\n}\n',
        },
    )
    assert _get(find_routes(app, "spring-boot")) == [
        "/inv/manage/health/liveness",
        "/inv/manage/health/readiness",
        "/inv/ops/b",
    ]
    (app / "src/main/resources/application.yml").write_text("management:\n  server:\n    port: 9001\n")
    assert _get(find_routes(app, "spring-boot")) == ["/ops/b"]  # the actuator is on another port then


def test_aspnet_groups(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "Program.cs": "var app = WebApplication.CreateBuilder(args).Build();\n"
            'var api = app.MapGroup("/api");\n'
            'var v1 = api.MapGroup("/v1");\nv1.MapGet("/health", () => "ok");\n'
            'app.MapMethods("/ready", new[] { "POST" }, () => "ok");\n'
            '// app.MapGet("/healthz", () => "ok");\n',
        },
    )
    assert _get(find_routes(app, "aspnetcore")) == ["/api/v1/health"]


def test_go_net_http_chi_and_patterns(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        {
            "main.go": 'package main\nfunc main() {\n\thttp.HandleFunc("/livez", h)\n'
            '\tmux := http.NewServeMux()\n\tmux.HandleFunc("GET /readyz", h)\n'
            '\tmux.HandleFunc("POST /hook", h)\n'
            '\tr := chi.NewRouter()\n\tr.Route("/api", func(r chi.Router) {\n\t\tr.Get("/health", h)\n\t})\n'
            '\tr.Get("/ping", h)\n\t// r.Get("/healthz", h)\n\tx := `r.Get("/raw", h)`\n}\n',
            "main_test.go": 'package main\nfunc TestX(t *testing.T) { http.HandleFunc("/status", h) }\n',
        },
    )
    routes = find_routes(app, "chi", language="go")
    assert _get(routes) == ["/api/health", "/livez", "/ping", "/readyz"]
    assert [r.method for r in routes if r.path == "/hook"] == ["POST"]


# --------------------------------------------------------------------------- pieces


def test_probe_choice_prefers_specific_names() -> None:
    def r(path: str, method: str = "GET") -> Route:
        return Route(path=path, method=method, file="x", line=1)

    chosen = choose(
        [r("/api/health"), r("/api/readyz"), r("/livez", "POST"), r("/orders/ping"), r("/status")]
    )
    assert (chosen.liveness.path, chosen.readiness.path) == ("/api/health", "/api/readyz")  # type: ignore[union-attr]
    assert choose([r("/users"), r("/healthz", "POST")]) == choose([])


def test_join_and_comment_blanking() -> None:
    assert join("/api/", "/v1", "health") == "/api/v1/health"
    assert join("", "") == "/" and join("/api", "healthz/") == "/api/healthz/"
    text = 'a = "http://x" // c\n/* b\n c */ d'
    blank = blank_comments(text)
    assert blank.count("\n") == 2 and '"http://x"' in blank and "c */" not in blank and blank.endswith(" d")
    assert not is_server_code("tests/test_app.py") and not is_server_code("web/client/App.js")
    assert is_server_code("shop/api.py")


@given(st.text(alphabet=list("ab/*'\"`\\\n #x"), max_size=200))
def test_blanking_keeps_every_offset_and_line(text: str) -> None:
    """Match offsets in blanked text are offsets in the source: same length, newlines where they were."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    for kw in ({}, {"hash_comments": True}, {"mask_strings": True}, {"raw_backquote": True}):
        out = blank_comments(text, **kw)
        assert len(out) == len(text)
        assert [i for i, c in enumerate(out) if c == "\n"] == newlines


@given(
    st.lists(st.text(alphabet=list("ab/"), max_size=6).filter(lambda p: "//" not in p.strip("/")), max_size=4)
)
def test_join_gives_one_clean_absolute_path(parts: list[str]) -> None:
    """Mount prefixes and paths meet with exactly one slash, whatever slashes each brings."""
    path = join(*parts)
    assert path.startswith("/") and "//" not in path
    assert path.strip("/") == "/".join(p.strip("/") for p in parts if p.strip("/"))

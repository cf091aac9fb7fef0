"""The Functions app: registers one blueprint per module in `functions/`, nothing else."""

import importlib
import pkgutil

import azure.functions as func

import functions

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for _module in sorted(pkgutil.iter_modules(functions.__path__), key=lambda m: m.name):
    if not _module.name.startswith("_"):
        app.register_functions(importlib.import_module(f"functions.{_module.name}").bp)

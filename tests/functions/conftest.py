"""Trigger tests: the real function_app, called directly, with fakes behind the container."""

from __future__ import annotations

import os

os.environ.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")

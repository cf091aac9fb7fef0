"""The Azure deployment (infra/*.bicep, azure.yaml) checked against the app it deploys.

The Bicep CLI is not available here, so the templates are parsed with pycep-parser (syntax only)
and these tests do the checks a compiler would not: that every setting the app reads reaches the
Function App, that nothing reaches storage by key, that every identity has the roles it needs,
and that no secret is written into a template.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser
from pydantic import SecretStr

from shared.config import Settings
from shared.domain.outbox import Queue

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
LOCAL_SETTINGS_EXAMPLE = ROOT / "local.settings.example.json"

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Every queue the app sends to; the trigger bindings are checked against the Bicep list too.
APP_QUEUES = {queue.value for queue in Queue}

# Settings the app reads that Azure deliberately does not get. Keep this short: each entry
# needs a default in shared/config.py and a reason.
NOT_IN_AZURE = {
    "PARTNER_CENTER_CA_CERT_PATH": "trusts the local simulator's own CA; in Azure the public "
    "CA chain of api.partnercenter.microsoft.com applies",
    "MAIL_DROP_DIR": "the local .eml drop folder; in Azure mail goes out over SMTP",
    "PARTNER_CENTER_CERTIFICATE_PATH": "Flex Consumption loads no certificates into the app; "
    "in Azure the app authenticates with the client secret from Key Vault",
    "PARTNER_CENTER_CERTIFICATE_THUMBPRINT": "belongs to PARTNER_CENTER_CERTIFICATE_PATH",
    "ORDER_STEP_CRASH_AFTER": "tests stop the host at a step boundary; refused in production",
    "SYNC_STEP_CRASH_AFTER": "tests stop the host at a step boundary; refused in production",
    "PARTNER_CENTER_SIMULATED_CLOCK": "the clock follows the local simulator's; refused in "
    "production",
}

# Names that look secret but are not: with local auth disabled, the Application Insights
# connection string only names the resource and its ingestion endpoint.
NOT_SECRET = {"applicationInsightsConnectionString"}

# Secret settings that Azure replaces with the managed identity: the setting must be absent
# (it would hold an account key) and these settings present instead.
IDENTITY_INSTEAD = {
    "AzureWebJobsStorage": (
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    ),
}

# Host settings a laptop needs that Flex Consumption sets from functionAppConfig.runtime and
# refuses as app settings.
FLEX_REFUSES = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
}

ROLE = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}

# Which roles the app's identity needs on which kind of resource, and why.
APP_ROLES_BY_SCOPE_TYPE = {
    # blob: the deployment package and host leases; queue: triggers and sends; table: records
    "Microsoft.Storage/storageAccounts": {
        ROLE["Storage Blob Data Owner"],
        ROLE["Storage Queue Data Contributor"],
        ROLE["Storage Table Data Contributor"],
    },
    "Microsoft.Insights/components": {ROLE["Monitoring Metrics Publisher"]},
    "Microsoft.KeyVault/vaults": {ROLE["Key Vault Secrets User"]},
}

KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=\$\{[^}]+\}\)$")
SECRET_NAME = re.compile(r"secret|password|passwd|token|connectionstring|accesskey|apikey", re.I)
# Text that only appears where a key or a key-bearing connection string is written down.
KEY_MATERIAL = re.compile(
    r"AccountKey=|SharedAccessKey=|SharedAccessSignature=|[?&]sig=|DefaultEndpointsProtocol=|"
    r"InstrumentationKey=|\blist(Keys|ConnectionStrings|AccountSas|ServiceSas)\b",
    re.I,
)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


# --- reading the templates ----------------------------------------------------------------------


@cache
def bicep(path: Path) -> dict[str, Any]:
    """A Bicep file as pycep's JSON (parameters, variables, resources, modules, outputs)."""
    return BicepParser().parse(file_path=path)


def main() -> dict[str, Any]:
    """main.bicep, parsed."""
    return bicep(MAIN)


def unquote(key: str) -> str:
    """An object key as written without its quotes ('azd-env-name' -> azd-env-name)."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own properties, looking through a loop or an if()."""
    config = resource["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def loop(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The loop a resource is declared in, if any: {item_name, array_name}."""
    config = resource["config"]
    return config["loop_type"]["detail"] if "loop_type" in config else None


def is_function(node: Any, name: str | None = None) -> bool:
    """Whether a parsed value is a function call (of that name)."""
    return (
        isinstance(node, dict)
        and set(node) == {"function"}
        and (name is None or node["function"]["type"] == name)
    )


def is_operator(node: Any, name: str | None = None) -> bool:
    """Whether a parsed value is an operator (of that kind)."""
    return (
        isinstance(node, dict)
        and set(node) == {"operator"}
        and (name is None or node["operator"]["type"] == name)
    )


def object_literals(node: Any) -> Iterator[dict[str, Any]]:
    """The object literals an expression builds: itself, or the arguments of union() etc."""
    if is_function(node):
        for argument in (node["function"].get("parameters") or {}).values():
            yield from object_literals(argument)
    elif is_operator(node):
        for operand in node["operator"]["operands"].values():
            yield from object_literals(operand)
    elif isinstance(node, dict):
        yield node


def references(node: Any) -> Iterator[str]:
    """Every bare name and every ${...} interpolation a parsed value mentions."""
    if isinstance(node, str):
        yield node
        yield from re.findall(r"\$\{\s*([A-Za-z_]\w*)", node)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from references(key)
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def accessor_path(node: Any) -> list[str]:
    """`a.b.c` as ['a', 'b', 'c']; a bare name as ['name']; anything else as []."""
    if isinstance(node, str):
        return node.split(".") if re.fullmatch(r"[A-Za-z_][\w.]*", node) else []
    if is_operator(node, "property_accessor"):
        operands = node["operator"]["operands"]
        head = accessor_path(operands["operand_1"])
        tail = accessor_path(operands["operand_2"])
        return head + tail if head and tail else []
    return []


def module_path(doc_path: Path, module: dict[str, Any]) -> Path:
    """The file a local module points at."""
    return (doc_path.parent / module["detail"]["path"]).resolve()


def module_using(path: Path) -> tuple[str, dict[str, Any]]:
    """The module in main.bicep that deploys a file: (symbol, module)."""
    found = [
        (symbol, module)
        for symbol, module in main().get("modules", {}).items()
        if module_path(MAIN, module) == path.resolve()
    ]
    assert len(found) == 1, f"main.bicep should deploy {path.relative_to(ROOT)} exactly once"
    return found[0]


def the_resource(type_: str) -> tuple[Path, str, dict[str, Any]]:
    """The one (non-existing) resource of a type across infra/: (file, symbol, resource)."""
    found = [
        (path, symbol, resource)
        for path in BICEP_FILES
        for symbol, resource in bicep(path).get("resources", {}).items()
        if resource["type"] == type_ and not resource["existing"]
    ]
    assert len(found) == 1, f"expected exactly one {type_}, found {[f[:2] for f in found]}"
    return found[0]


def declared_params(path: Path) -> dict[str, Any]:
    """The parameters a Bicep file declares."""
    return bicep(path).get("parameters", {})


def is_secure(param: dict[str, Any]) -> bool:
    """Whether a parameter carries @secure()."""
    return any(d["type"] == "secure" for d in param["decorators"])


# --- what the Function App gets as app settings ------------------------------------------------


def app_settings() -> dict[str, tuple[Any, Path]]:
    """Every app setting the Function App gets: name -> (parsed value, file it is written in).

    Follows the sites/config 'appsettings' resource through union() and module parameters back to
    main.bicep, so a setting counts wherever along that path it is written.
    """
    api_path, _, _ = the_resource("Microsoft.Web/sites")
    api = bicep(api_path)
    configs = [
        body(r)
        for r in api["resources"].values()
        if r["type"] == "Microsoft.Web/sites/config" and body(r)["name"] == "appsettings"
    ]
    assert len(configs) == 1, "the Function App needs one sites/config 'appsettings' resource"
    _, api_module = module_using(api_path)
    passed = body(api_module)["params"]

    settings: dict[str, tuple[Any, Path]] = {}

    def collect(expression: Any, path: Path) -> None:
        doc = bicep(path)
        if isinstance(expression, str):
            if path == api_path and expression in doc.get("parameters", {}):
                # a parameter of the module: what main.bicep passes for it
                assert expression in passed, f"main.bicep does not pass {expression} to the app"
                collect(passed[expression], MAIN)
            elif expression in doc.get("variables", {}):
                collect(doc["variables"][expression]["value"], path)
        elif is_function(expression, "union"):
            for argument in expression["function"]["parameters"].values():
                collect(argument, path)
        elif is_function(expression) or is_operator(expression):
            raise AssertionError(
                f"app settings built in a way this test cannot follow: {expression}"
            )
        else:
            for key, value in expression.items():
                name = unquote(key)
                assert name not in settings, f"app setting {name} is set twice"
                settings[name] = (value, path)

    collect(configs[0]["properties"], api_path)
    return settings


def settings_the_app_reads() -> dict[str, str]:
    """Every app-setting name the code reads -> where it was found."""
    names = {field.alias: "shared/config.py" for field in Settings.model_fields.values()}
    if LOCAL_SETTINGS_EXAMPLE.exists():
        values = json.loads(LOCAL_SETTINGS_EXAMPLE.read_text())["Values"]
        for name in values:
            names.setdefault(name, LOCAL_SETTINGS_EXAMPLE.name)
    return names


def field_by_alias() -> dict[str, Any]:
    """Settings fields keyed by their app-setting name."""
    return {field.alias: field for field in Settings.model_fields.values()}


def holds_secret(annotation: Any) -> bool:
    """Whether a field's type is (or includes) SecretStr."""
    if annotation is SecretStr:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(holds_secret(a) for a in typing.get_args(annotation))
    return False


def is_key_vault_reference(value: Any) -> bool:
    """A Key Vault reference, or a choice between one and an empty value."""
    if isinstance(value, str):
        return bool(KEY_VAULT_REFERENCE.match(value))
    if is_operator(value, "conditional"):
        operands = value["operator"]["operands"]
        branches = [operands["true_value"], operands["false_value"]]
        return any(is_key_vault_reference(b) for b in branches) and all(
            b == "" or is_key_vault_reference(b) for b in branches
        )
    return False


def queues_in_bicep() -> set[str]:
    """The names of every queue the templates create, loops expanded."""
    storage_path, _, _ = the_resource("Microsoft.Storage/storageAccounts")
    storage = bicep(storage_path)
    _, storage_module = module_using(storage_path)
    names = set()
    for resource in storage["resources"].values():
        if not resource["type"].endswith("/queueServices/queues"):
            continue
        name = body(resource)["name"]
        detail = loop(resource)
        if detail is None:
            names.add(name)
            continue
        # A loop over a parameter: the list main.bicep passes for it.
        passed = body(storage_module)["params"][detail["array_name"]]
        items = main()["variables"][passed]["value"] if isinstance(passed, str) else passed
        item = detail["item_name"]
        for value in items:
            names.add(value if name == item else name.replace(f"${{{item}}}", value))
    return names


# --- role assignments ---------------------------------------------------------------------------


def role_assignments() -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """Every role assignment in infra/: (file, symbol, resource)."""
    for path in BICEP_FILES:
        for symbol, resource in bicep(path).get("resources", {}).items():
            if resource["type"] == "Microsoft.Authorization/roleAssignments":
                yield path, symbol, resource


def role_ids(path: Path, resource: dict[str, Any]) -> set[str]:
    """The role definition GUIDs an assignment (or a loop of them) grants."""
    doc = bicep(path)
    variables = doc.get("variables", {})
    role = body(resource)["properties"]["roleDefinitionId"]
    assert is_function(role, "subscription_resource_id"), "use subscriptionResourceId(...)"
    name = role["function"]["parameters"]["resource_name_1"]

    def literal(value: str) -> str:
        return variables[value]["value"] if value in variables else value

    detail = loop(resource)
    if detail and name == detail["item_name"]:
        array = detail["array_name"]
        if is_operator(array, "conditional"):  # `empty(x) ? [] : roles`
            array = array["operator"]["operands"]["false_value"]
        items = variables[array]["value"] if isinstance(array, str) else array
        return {literal(item) for item in items}
    return {literal(name)}


def scope_type(path: Path, resource: dict[str, Any]) -> str:
    """The resource type an assignment is scoped to."""
    scope = body(resource).get("scope")
    assert isinstance(scope, str), "a role assignment needs an explicit resource scope"
    return bicep(path)["resources"][scope]["type"]


def app_principal_param(rbac_path: Path) -> str:
    """The parameter of the role module that main.bicep fills with the app's identity."""
    _, api_module = module_using(the_resource("Microsoft.Web/sites")[0])
    identity_path = accessor_path(body(api_module)["params"]["identityId"])
    assert identity_path[1:] == ["outputs", "id"], "identityId should be <module>.outputs.id"
    identity_module = identity_path[0]
    _, rbac_module = module_using(rbac_path)
    params = [
        name
        for name, value in body(rbac_module)["params"].items()
        if accessor_path(value) == [identity_module, "outputs", "principalId"]
    ]
    assert len(params) == 1, "pass the app identity's principalId to the role module once"
    return params[0]


# --- the tests: templates -----------------------------------------------------------------------


def test_infra_has_main_and_modules():
    assert MAIN in BICEP_FILES
    assert len(BICEP_FILES) > 1, "resources live in modules under infra/app or infra/core"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    doc = bicep(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_main_is_subscription_scoped_and_names_resources_the_azd_way():
    doc = main()
    assert doc["globals"]["scope"]["value"] == "subscription"
    token = doc["variables"]["resourceToken"]["value"]
    assert is_function(token, "to_lower")
    unique = token["function"]["parameters"]["string_to_change"]
    assert is_function(unique, "unique_string")
    args = list(unique["function"]["parameters"].values())
    # uniqueString(subscription().id, environmentName, location)
    assert is_operator(args[0], "property_accessor")
    assert is_function(args[0]["operator"]["operands"]["operand_1"], "subscription")
    assert args[0]["operator"]["operands"]["operand_2"] == "id"
    assert args[1:] == ["environmentName", "location"]
    abbrs = doc["variables"]["abbrs"]["value"]
    assert is_function(abbrs, "load_json_content")
    assert abbrs["function"]["parameters"]["file_path"] == "./abbreviations.json"
    groups = [
        r for r in doc["resources"].values() if r["type"] == "Microsoft.Resources/resourceGroups"
    ]
    assert len(groups) == 1, "main.bicep creates the resource group"
    tags = doc["variables"]["tags"]["value"]
    assert tags.get("'azd-env-name'") == "environmentName"
    assert body(groups[0])["tags"] == "tags"
    for symbol, module in doc["modules"].items():
        if "tags" in declared_params(module_path(MAIN, module)):
            assert body(module)["params"].get("tags") == "tags", f"module {symbol} drops the tags"


def test_every_abbreviation_used_exists():
    known = json.loads((INFRA / "abbreviations.json").read_text())
    for path in BICEP_FILES:
        for name in re.findall(r"\babbrs\.(\w+)", path.read_text()):
            assert name in known, f"{path.name}: abbrs.{name} is not in abbreviations.json"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_modules_get_the_parameters_they_declare(path):
    text = path.read_text()
    modules = bicep(path).get("modules", {})
    for symbol, module in modules.items():
        target = module_path(path, module)
        assert target.exists(), f"{path.name}: module {symbol} points at a missing file"
        declared = declared_params(target)
        passed = body(module).get("params", {})
        assert not set(passed) - set(declared), (
            f"{symbol}: unknown params {set(passed) - set(declared)}"
        )
        required = {name for name, p in declared.items() if p["default"] is None}
        assert required <= set(passed), f"{symbol}: missing params {required - set(passed)}"
        outputs = bicep(target).get("outputs", {})
        for used in re.findall(rf"\b{symbol}\.outputs\.(\w+)", text):
            assert used in outputs, f"{path.name}: {symbol}.outputs.{used} is not declared"


def test_function_app_runs_on_flex_consumption():
    path, _, site = the_resource("Microsoft.Web/sites")
    _, _, plan = the_resource("Microsoft.Web/serverfarms")
    plan = body(plan)
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    site = body(site)
    params = declared_params(path)
    assert site["kind"] == "functionapp,linux"
    config = site["properties"]["functionAppConfig"]
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert storage["authentication"]["userAssignedIdentityResourceId"] in params
    scale = config["scaleAndConcurrency"]
    for setting in ("maximumInstanceCount", "instanceMemoryMB"):
        assert scale[setting] in params, f"{setting} should be a parameter"
        assert scale[setting] in main()["parameters"], f"{setting}: a parameter of main.bicep too"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    python = re.search(r">=\s*(\d+\.\d+)", requires).group(1)
    assert config["runtime"] == {"name": "python", "version": python}


def test_function_app_is_locked_down_and_runs_as_its_own_identity():
    _, _, site = the_resource("Microsoft.Web/sites")
    site = body(site)
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    identity = site["identity"]
    assert identity["type"] == "UserAssigned"
    (identity_id,) = [unquote(k) for k in identity["userAssignedIdentities"]]
    # Key Vault references must resolve with the same identity the app runs as.
    assert identity_id == f"${{{properties['keyVaultReferenceIdentity']}}}"
    deployment_auth = properties["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert f"${{{deployment_auth['userAssignedIdentityResourceId']}}}" == identity_id


def test_azd_finds_the_function_app_by_its_service_tag():
    _, _, site = the_resource("Microsoft.Web/sites")
    tags: dict[str, Any] = {}
    for literal in object_literals(body(site)["tags"]):
        tags.update({unquote(k): v for k, v in literal.items()})
    services = yaml.safe_load(AZURE_YAML.read_text())["services"]
    assert tags.get("azd-service-name") in services


def test_deployment_package_goes_to_the_container_storage_creates():
    storage_path, _, container = the_resource(
        "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    assert body(container)["name"] in declared_params(storage_path)
    assert body(container)["properties"]["publicAccess"] == "None"
    _, storage_module = module_using(storage_path)
    _, api_module = module_using(the_resource("Microsoft.Web/sites")[0])
    given_to_storage = body(storage_module)["params"][body(container)["name"]]
    given_to_api = body(api_module)["params"]["deploymentContainerName"]
    assert given_to_storage == given_to_api


def test_storage_accepts_identities_only():
    _, _, account = the_resource("Microsoft.Storage/storageAccounts")
    properties = body(account)["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["allowBlobPublicAccess"] is False
    # Network access is stated, not left to defaults, and no service bypasses it.
    assert properties["publicNetworkAccess"] in {"Enabled", "Disabled"}
    assert properties["networkAcls"]["bypass"] == "None"


def test_queues_are_the_ones_the_app_uses_each_with_its_poison_queue():
    assert queues_in_bicep() == APP_QUEUES | {f"{queue}-poison" for queue in APP_QUEUES}


def test_key_vault_uses_rbac_soft_delete_and_configurable_purge_protection():
    path, _, vault = the_resource("Microsoft.KeyVault/vaults")
    properties = body(vault)["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    purge = properties["enablePurgeProtection"]
    assert set(references(purge)) & set(declared_params(path)), "purge protection is a parameter"
    assert "accessPolicies" not in properties


def test_secrets_are_written_only_when_given():
    path = the_resource("Microsoft.KeyVault/vaults")[0]
    doc = bicep(path)
    secrets = [
        r for r in doc["resources"].values() if r["type"] == "Microsoft.KeyVault/vaults/secrets"
    ]
    assert secrets
    for secret in secrets:
        value = body(secret)["properties"]["value"]
        assert is_secure(doc["parameters"][value]), "a secret's value comes from a @secure() param"
        condition = secret["config"].get("condition")
        assert condition is not None and value in set(references(condition)), (
            "write a secret only when its parameter is non-empty"
        )


# --- the tests: app settings --------------------------------------------------------------------


def test_every_setting_the_app_reads_reaches_the_function_app():
    provided = app_settings()
    missing = {
        name: source
        for name, source in settings_the_app_reads().items()
        if name not in provided
        and name not in NOT_IN_AZURE
        and name not in IDENTITY_INSTEAD
        and name not in FLEX_REFUSES
    }
    assert not missing, f"add these to the app settings in infra/main.bicep: {missing}"


def test_settings_left_out_of_azure_are_few_known_and_have_defaults():
    fields = field_by_alias()
    read = settings_the_app_reads()
    for name in NOT_IN_AZURE:
        assert name in read, f"{name} is allow-listed but the app no longer reads it"
        assert name not in app_settings(), f"{name} is allow-listed yet set in Azure"
        if name in fields:
            assert not fields[name].is_required(), f"{name} has no default to fall back on"


def test_secret_settings_are_key_vault_references_or_replaced_by_the_identity():
    provided = app_settings()
    secrets = [alias for alias, field in field_by_alias().items() if holds_secret(field.annotation)]
    assert secrets, "shared/config.py should mark secrets as SecretStr"
    for name in secrets:
        if name in NOT_IN_AZURE:
            continue
        if name in IDENTITY_INSTEAD:
            assert name not in provided, f"{name} would carry a key: use the identity"
            for replacement in IDENTITY_INSTEAD[name]:
                assert replacement in provided, f"{name} is replaced by {replacement}"
            continue
        assert name in provided, f"secret {name} is not provided"
        value, _ = provided[name]
        assert is_key_vault_reference(value), f"{name} must be a Key Vault reference, not {value!r}"


def test_values_a_deployer_must_choose_come_from_parameters():
    # A setting whose code default is empty or a placeholder has no value that fits every
    # deployment: it must come from a parameter, never a literal in the template.
    provided = app_settings()
    for name, field in field_by_alias().items():
        if name in NOT_IN_AZURE or name in IDENTITY_INSTEAD or holds_secret(field.annotation):
            continue
        default = field.default
        if field.is_required() or default in ("", None) or ".example" in str(default):
            value, path = provided[name]
            assert isinstance(value, str) and value in declared_params(path), (
                f"{name} should come from a parameter, not {value!r}"
            )


def test_host_and_telemetry_reach_storage_and_app_insights_by_identity():
    provided = app_settings()
    path = provided["AzureWebJobsStorage__accountName"][1]
    params = declared_params(path)
    assert provided["AzureWebJobsStorage__credential"][0] == "managedidentity"
    client_id = provided["AzureWebJobsStorage__clientId"][0]
    assert client_id in params
    assert provided["AzureWebJobsStorage__accountName"][0] in params
    assert provided["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"][0] == (
        f"ClientId=${{{client_id}}};Authorization=AAD"
    )
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in provided
    _, _, insights = the_resource("Microsoft.Insights/components")
    assert body(insights)["properties"]["DisableLocalAuth"] is True


def test_flex_consumption_gets_no_settings_it_refuses():
    assert not FLEX_REFUSES & set(app_settings())


def test_app_runs_as_production():
    assert app_settings()["APP_ENVIRONMENT"][0] == "production"


def test_the_app_bindings_use_only_queues_and_settings_that_exist():
    if not (ROOT / "function_app.py").exists():
        pytest.skip("function_app.py is not written yet")
    from tests.app_index import functions

    provided = app_settings()
    queues = queues_in_bicep()
    for function in functions():
        for binding in function.get_bindings_dict()["bindings"]:
            for value in binding.values():
                for setting in re.findall(r"%(\w+)%", str(value)):
                    assert setting in provided, f"{binding['name']}: %{setting}% is not set"
            if binding["type"] in {"queue", "queueTrigger"}:
                assert binding["queueName"] in queues, f"queue {binding['queueName']} not created"
                connection = binding.get("connection") or "AzureWebJobsStorage"
                assert any(k.startswith(f"{connection}__") for k in provided), (
                    f"connection {connection} has no identity settings"
                )


# --- the tests: roles ---------------------------------------------------------------------------


def test_app_identity_has_the_roles_each_resource_needs():
    paths = {path for path, _, _ in role_assignments()}
    assert paths, "no role assignments"
    granted: dict[str, set[str]] = {}
    for path in paths:
        principal = app_principal_param(path)
        for _, _, resource in [r for r in role_assignments() if r[0] == path]:
            properties = body(resource)["properties"]
            if properties["principalId"] != principal:
                continue
            assert properties["principalType"] == "ServicePrincipal"
            granted.setdefault(scope_type(path, resource), set()).update(role_ids(path, resource))
    for type_, roles in APP_ROLES_BY_SCOPE_TYPE.items():
        assert roles <= granted.get(type_, set()), (
            f"the app lacks {roles - granted.get(type_, set())} on {type_}"
        )


def test_role_assignment_names_are_guids_of_scope_principal_and_role():
    for path, symbol, resource in role_assignments():
        config = body(resource)
        name = config["name"]
        assert is_function(name, "guid"), f"{path.name}:{symbol}: name it with guid(...)"
        args = list(name["function"]["parameters"].values())
        assert accessor_path(args[0]) == [config["scope"], "id"], f"{symbol}: guid(scope.id, ...)"
        assert args[1] == config["properties"]["principalId"], (
            f"{symbol}: guid(.., principalId, ..)"
        )
        role = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        assert args[2] == role, f"{symbol}: guid(.., .., roleId)"
        assert all(GUID.match(r) for r in role_ids(path, resource)), f"{symbol}: role ids are GUIDs"


def test_deploying_user_gets_data_roles_only_when_given():
    principal = main()["parameters"]["principalId"]
    assert principal["default"] == "", "principalId is optional"
    passed_to = [
        (symbol, name)
        for symbol, module in main()["modules"].items()
        for name, value in body(module).get("params", {}).items()
        if value == "principalId"
    ]
    assert passed_to, "principalId is passed to the role module"
    for symbol, name in passed_to:
        path = module_path(MAIN, main()["modules"][symbol])
        user_roles = [
            resource
            for p, _, resource in role_assignments()
            if p == path and body(resource)["properties"]["principalId"] == name
        ]
        assert user_roles, f"{symbol}: no role for the deploying user"
        for resource in user_roles:
            detail = loop(resource)
            guarded = resource["config"].get("condition") or (detail and detail["array_name"])
            assert name in set(references(guarded)), "the user's roles depend on the id being given"


# --- the tests: secrets and azd -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [*BICEP_FILES, PARAMETERS, AZURE_YAML, INFRA / "abbreviations.json"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_key_or_secret_is_written_into_the_deployment(path):
    text = path.read_text()
    match = KEY_MATERIAL.search(text)
    assert not match, f"{path.name} contains {match.group(0)!r}"
    # Quoted literals that look like a key: long, random, mixed letters and digits, no spaces.
    for literal in re.findall(r"'([^'\n]*)'|\"([^\"\n]*)\"", text):
        value = "".join(literal)
        if GUID.match(value) or value.startswith(("http", "${", "@Microsoft.", "./", "../")):
            continue
        looks_random = re.fullmatch(r"[A-Za-z0-9+/=_\-]{24,}", value) and (
            re.search(r"\d", value) and re.search(r"[a-z]", value) and re.search(r"[A-Z]", value)
        )
        assert not looks_random, f"{path.name}: {value!r} looks like a secret"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_secret_parameters_are_secure_and_reach_only_key_vault(path):
    doc = bicep(path)
    params = doc.get("parameters", {})
    for name, param in params.items():
        if SECRET_NAME.search(name) and name not in NOT_SECRET:
            assert is_secure(param), f"{path.name}: {name} needs @secure()"
    secure = {name for name, param in params.items() if is_secure(param)}
    for symbol, resource in doc.get("resources", {}).items():
        used = secure & set(references(resource["config"]))
        assert not used or resource["type"] == "Microsoft.KeyVault/vaults/secrets", (
            f"{path.name}:{symbol} uses {used}; secrets go to Key Vault only"
        )
    for symbol, module in doc.get("modules", {}).items():
        target_params = declared_params(module_path(path, module))
        for name, value in body(module).get("params", {}).items():
            if secure & set(references(value)):
                assert is_secure(target_params[name]), f"{symbol}.{name} must be @secure() too"
    for name, output in doc.get("outputs", {}).items():
        assert not secure & set(references(output)), f"{path.name}: output {name} leaks a secret"
        looks_secret = SECRET_NAME.search(name) and name not in NOT_SECRET
        assert not looks_secret or name.endswith("Uri"), f"{path.name}: output {name} is a secret?"


def test_parameters_file_matches_main_bicep():
    params = main()["parameters"]
    values = {k: v["value"] for k, v in json.loads(PARAMETERS.read_text())["parameters"].items()}
    assert not set(values) - set(params), f"unknown parameters: {set(values) - set(params)}"
    required = {name for name, p in params.items() if p["default"] is None}
    assert required <= set(values), (
        f"give these a value or an azd variable: {required - set(values)}"
    )
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    for name, value in values.items():
        if is_secure(params[name]):
            assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", value), (
                f"{name} must come from the environment"
            )
        # An azd default (${VAR=default}) must agree with the template's own default.
        default = re.fullmatch(r"\$\{[A-Z0-9_]+=(.*)\}", str(value))
        if default and params[name]["default"] is not None:
            template_default = str(params[name]["default"]).lower()  # bicep's true is Python's True
            assert default.group(1).lower() == template_default, (
                f"{name}: azd default differs from the template's"
            )


def test_azure_yaml_deploys_this_directory_as_a_python_function_app():
    document = yaml.safe_load(AZURE_YAML.read_text())
    assert document["name"]
    assert document["services"] == {
        "api": {"project": ".", "language": "python", "host": "function"}
    }
    infra = document.get("infra", {})
    assert infra.get("path", "infra") == "infra" and infra.get("module", "main") == "main"

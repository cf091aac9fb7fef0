// The whole deployment for `azd up`: one resource group holding the Function App (Flex
// Consumption), its storage, Key Vault and monitoring. No resource holds an account key or a
// secret in an app setting: the app reaches everything with its user-assigned identity.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; part of every resource name and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for all resources. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Principal id of the deploying user (azd sets AZURE_PRINCIPAL_ID); gets data roles for local debugging. Empty: none.')
param principalId string = ''

@description('Type of principalId: a person, or a service principal when a pipeline deploys.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

// --- Partner Center --------------------------------------------------------------------------
// Values without a default are required: azd asks for them, and @minLength(1) stops an empty one.

@description('Entra tenant id of the partner (distributor) tenant that owns the Partner Center app registration.')
@minLength(1)
param partnerCenterTenantId string

@description('Application (client) id of the Partner Center app registration.')
@minLength(1)
param partnerCenterClientId string

@secure()
@description('Client secret of that app registration; stored in Key Vault. Empty: keep what the vault holds.')
param partnerCenterClientSecret string = ''

@secure()
@description('Refresh token of a partner user (Secure Application Model) for app+user calls; stored in Key Vault. Empty: keep what the vault holds.')
param partnerCenterRefreshToken string = ''

// --- e-mail ----------------------------------------------------------------------------------

@description('Sender of notification e-mails, e.g. "CSP Platform <no-reply@example.com>".')
@minLength(1)
param mailFrom string

@description('SMTP server host name for notification e-mails.')
@minLength(1)
param smtpHost string

@description('SMTP port (587: submission with STARTTLS).')
param smtpPort int = 587

@description('SMTP user name. Empty: send without authentication (and no password is referenced).')
param smtpUsername string = ''

@secure()
@description('SMTP password; stored in Key Vault. Empty: keep what the vault holds.')
param smtpPassword string = ''

// --- sign-in ----------------------------------------------------------------------------------

@description('Trusted sign-in issuers as JSON: [{"issuer", "jwksUri", "audience", "kind": "platform|work|personal"}]; `{tenantid}` in an issuer stands for any Entra tenant.')
@minLength(2)
param authIssuers string

@description('Public https base URL of the web client, used in links in e-mails (invitations).')
@minLength(1)
param publicBaseUrl string

@description('Trust the App Service Authentication (Easy Auth) header X-MS-CLIENT-PRINCIPAL. Only when Easy Auth is on for the app.')
param authEasyAuthEnabled bool = false

@description('The partner\'s Partner Center billing currency: the Azure usage export is asked in it (USAGE_BILLING_CURRENCY).')
@minLength(3)
@maxLength(3)
param usageBillingCurrency string = 'EUR'

// --- sizing and safety -----------------------------------------------------------------------

@description('Prefix for table names (TABLE_PREFIX), letters only.')
@maxLength(20)
param tablePrefix string = ''

@description('Upper bound on Function App instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Function App instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Key Vault purge protection. Irreversible once on; turn on for production.')
param keyVaultEnablePurgeProtection bool = false

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
// The storage account is this app's alone, so a fixed container name is unique enough.
var deploymentContainerName = 'app-package'

// The queues of shared/domain/outbox.py (Queue), which tests/unit/test_infra.py holds this list
// to; storage.bicep adds each one's -poison queue.
var queueNames = [
  'provision-customer'
  'provision-order'
  'change-subscription'
  'sync-reseller'
  'notifications'
  'ledger'
  'usage-import'
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: keyVaultEnablePurgeProtection
    partnerCenterClientSecret: partnerCenterClientSecret
    partnerCenterRefreshToken: partnerCenterRefreshToken
    smtpPassword: smtpPassword
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// Every setting the app reads (shared/config.py) apart from host and identity plumbing, which
// api.bicep adds. Secrets are Key Vault references, never values. Left out on purpose (see
// tests/unit/test_infra.py): the local simulator's CA path, the .eml drop folder, and the
// certificate credential (Flex Consumption loads no certificates; the app uses the secret).
var appSettings = {
  APP_ENVIRONMENT: 'production'
  TABLE_PREFIX: tablePrefix
  OUTBOX_SWEEP_SCHEDULE: '0 */1 * * * *'
  OUTBOX_MIN_AGE_SECONDS: '60'
  HOUSEKEEPING_SCHEDULE: '0 */5 * * * *'
  WATCHDOG_DEADLINE_MINUTES: '30'
  RETENTION_DAYS: '30'
  REMINDER_SCHEDULE: '0 0 7 * * *'
  CATALOG_IMPORT_SCHEDULE: '0 30 2 * * *'
  CATALOG_MARKETS: 'CZ'
  DISTRIBUTOR_MARKUP_PERCENT: '0'
  SYNC_NOW_COOLDOWN_MINUTES: '15'

  PARTNER_CENTER_API_BASE_URL: 'https://api.partnercenter.microsoft.com'
  PARTNER_CENTER_PRICE_SHEET_BASE_URL: 'https://api.partner.microsoft.com'
  PARTNER_CENTER_AUTHORITY: 'https://login.microsoftonline.com'
  PARTNER_CENTER_SCOPE: 'https://api.partnercenter.microsoft.com/.default'
  PARTNER_CENTER_PRICE_SHEET_SCOPE: 'https://api.partner.microsoft.com/.default'
  PARTNER_CENTER_GRAPH_URL: 'https://graph.microsoft.com/v1.0'
  PARTNER_CENTER_GRAPH_SCOPE: 'https://graph.microsoft.com/.default'
  PARTNER_CENTER_TENANT_ID: partnerCenterTenantId
  PARTNER_CENTER_CLIENT_ID: partnerCenterClientId
  // Both secrets are needed in production (app-only and app+user calls), so both are always
  // referenced: until the vault holds them, Partner Center calls fail rather than run half-set.
  PARTNER_CENTER_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.partnerCenterClientSecretUri})'
  PARTNER_CENTER_REFRESH_TOKEN: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.partnerCenterRefreshTokenUri})'
  PARTNER_CENTER_LOCALE: 'en-US'
  // Retry and polling budget: Partner Center throttles at about 500 requests a minute per tenant.
  PARTNER_CENTER_CONNECT_TIMEOUT_SECONDS: '10'
  PARTNER_CENTER_TIMEOUT_SECONDS: '60'
  PARTNER_CENTER_MAX_ATTEMPTS: '5'
  PARTNER_CENTER_MAX_RETRY_SECONDS: '120'
  PARTNER_CENTER_BACKOFF_BASE_SECONDS: '1'
  PARTNER_CENTER_BACKOFF_CAP_SECONDS: '30'
  // Shared by every instance (table RequestBudgets): Microsoft's documented 500/min per partner.
  PARTNER_CENTER_REQUESTS_PER_MINUTE: '500'
  PARTNER_CENTER_POLL_INTERVAL_SECONDS: '5'
  PARTNER_CENTER_POLL_TIMEOUT_SECONDS: '300'

  // Orders: the provision-order step re-enqueues itself while Partner Center provisions.
  ORDER_POLL_SECONDS: '10'
  ORDER_CUSTOMER_WAIT_SECONDS: '30'
  ORDER_MAX_POLLS: '60'

  // Sync: the nightly mirror of each reseller's customers, subscriptions and licences.
  SYNC_SCHEDULE: '0 0 1 * * *'
  // Ledger: the hourly opening of the current month (live subscriptions carried into it) and
  // the daily reconciliation of the subscription records with it.
  LEDGER_SCHEDULE: '0 10 * * * *'
  LEDGER_RECONCILE_SCHEDULE: '0 40 1 * * *'
  SYNC_CHUNK_SIZE: '250'
  SYNC_LICENCE_MAX_AGE_DAYS: '7'
  SYNC_RUN_RETENTION_DAYS: '90'

  // Azure usage: the nightly import of Partner Center's usage export (after the catalog's).
  USAGE_IMPORT_SCHEDULE: '0 30 2 * * *'
  USAGE_BILLING_CURRENCY: usageBillingCurrency
  USAGE_POLL_SECONDS: '60'

  AUTH_ISSUERS: authIssuers
  AUTH_EASY_AUTH_ENABLED: string(authEasyAuthEnabled)
  AUTH_CLOCK_SKEW_SECONDS: '60'
  AUTH_JWKS_CACHE_SECONDS: '3600'
  INVITATION_VALID_DAYS: '7'
  PUBLIC_BASE_URL: publicBaseUrl
  IDEMPOTENCY_TTL_SECONDS: '86400'

  MAIL_FROM: mailFrom
  SMTP_HOST: smtpHost
  SMTP_PORT: string(smtpPort)
  SMTP_USERNAME: smtpUsername
  // Referenced only with a user name: an unresolvable reference would reach the app as text.
  SMTP_PASSWORD: empty(smtpUsername) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.smtpPasswordUri})'
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  // The app must not start before it may read its storage, secrets and telemetry.
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    appSettings: appSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

// azd writes these to .azure/<env>/.env; none is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri

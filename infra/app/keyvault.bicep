// Key Vault for the app's secrets. Access is by Azure RBAC only (no access policies); the app's
// identity reads secrets through Key Vault references in its app settings.

param name string
param location string
param tags object = {}

@description('Purge protection: once on it cannot be switched off, and a deleted vault blocks its name for the retention period. On for production.')
param enablePurgeProtection bool = false

@description('Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 7

@secure()
@description('Partner Center app registration client secret. Empty: leave the secret as it is in the vault (set it there yourself).')
param partnerCenterClientSecret string = ''

@secure()
@description('Partner Center refresh token (Secure Application Model, app+user calls). Empty: leave the secret as it is in the vault.')
param partnerCenterRefreshToken string = ''

@secure()
@description('SMTP password. Empty: leave the secret as it is in the vault.')
param smtpPassword string = ''

// Secret names are fixed so that app settings can reference them whether or not this
// deployment wrote a value.
var partnerCenterClientSecretName = 'partner-center-client-secret'
var partnerCenterRefreshTokenName = 'partner-center-refresh-token'
var smtpPasswordName = 'smtp-password'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The API accepts only true or an absent value, never false.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'None'
    }
  }
}

// Written only when a value is given, so a later `azd provision` without the value does not
// overwrite (or blank) a secret that was set directly in the vault.
resource partnerCenterClientSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(partnerCenterClientSecret)) {
  parent: vault
  name: partnerCenterClientSecretName
  properties: {
    value: partnerCenterClientSecret
  }
}

resource partnerCenterRefreshTokenResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(partnerCenterRefreshToken)) {
  parent: vault
  name: partnerCenterRefreshTokenName
  properties: {
    value: partnerCenterRefreshToken
  }
}

resource smtpPasswordResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(smtpPassword)) {
  parent: vault
  name: smtpPasswordName
  properties: {
    value: smtpPassword
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
// Versionless secret URIs: a Key Vault reference to them follows the latest version.
output partnerCenterClientSecretUri string = '${vault.properties.vaultUri}secrets/${partnerCenterClientSecretName}'
output partnerCenterRefreshTokenUri string = '${vault.properties.vaultUri}secrets/${partnerCenterRefreshTokenName}'
output smtpPasswordUri string = '${vault.properties.vaultUri}secrets/${smtpPasswordName}'

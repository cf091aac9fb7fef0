// Logs and telemetry: a Log Analytics workspace and a workspace-based Application Insights that
// accepts only Entra ID-authenticated ingestion (the app's identity, Monitoring Metrics Publisher).

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Days to keep logs; 30 stays within the free retention of Log Analytics.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // No instrumentation-key ingestion: the connection string alone cannot write telemetry.
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
// The connection string is not a credential once local auth is disabled (it names the
// resource and its ingestion endpoint only).
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
output logAnalyticsId string = logAnalytics.id

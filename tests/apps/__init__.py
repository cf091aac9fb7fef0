"""Small FunctionApps used only to test localdev.host."""

"""Tools the model can call: descriptors, registry, executors, MCP."""

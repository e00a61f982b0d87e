//! openshell-driver-docker (placeholder)

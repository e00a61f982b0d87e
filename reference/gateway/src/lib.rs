//! openshell-gateway (placeholder)

//! openshell-cli (placeholder)

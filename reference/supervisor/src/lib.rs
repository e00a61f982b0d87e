//! openshell-supervisor (placeholder)

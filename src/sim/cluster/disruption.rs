//! PodDisruptionBudgets: the status controller's arithmetic and the Eviction API's decision.

//! Load balancing over a cluster's endpoints (being written).

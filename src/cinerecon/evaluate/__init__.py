"""Evaluation: metrics, dynamic regions, statistics, reports and figures."""

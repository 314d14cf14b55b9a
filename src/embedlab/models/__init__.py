"""The model: its typed predictions, the open-set and multi-label classifiers, hierarchies,
selection, encoder adaptation, self-training, the Pipeline with its fit, class changes,
evaluation, persistence, lineage and capability table."""

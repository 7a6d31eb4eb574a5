"""ML assistance on the server side: when to train, the training worker, prelabels written into documents."""

"""Exports: a project's labels written as COCO, AutoML JSON Lines, CSV, mask PNGs, Pascal VOC
or YOLO, streamed from Postgres in batches by a background job."""

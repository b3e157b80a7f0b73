#!/usr/bin/python3
"""Trains a Cloister diagnostics model on a grayscale MedMNIST v2 split and exports it to ONNX.

Run with Debian's interpreter, which has python3-torch and python3-onnx:

    /usr/bin/python3 models/train.py pneumoniamnist

Reproducible: fixed seeds, deterministic algorithms, two threads. The data set is read from
../shared/data/medmnist (or --data). The validation split is never used for training or for any choice the
script makes: 10% of the training split (seeded) is held out for early stopping and temperature scaling,
and validation metrics are only reported.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATASETS = {
    "pneumoniamnist": {
        "name": "chest-xray-pneumonia",
        "labels": ["normal", "pneumonia"],
        "title": "Pneumonia on a frontal paediatric chest X-ray",
        "modality": "DX",
        "body_site": "chest",
        # Kermany et al. 2018: children aged one to five (the platform analyses no one else's images).
        "intended_patients": {"minAgeYears": 1, "maxAgeYears": 5},
        "epochs": 40,
    },
    "breastmnist": {
        "name": "breast-ultrasound",
        "labels": ["malignant", "normal or benign"],
        "title": "Malignancy on a breast ultrasound image",
        "modality": "US",
        "body_site": "breast",
        # Al-Dhabyani et al. 2020: women aged 25 to 75.
        "intended_patients": {"minAgeYears": 25, "maxAgeYears": 75, "sex": ["female"]},
        "epochs": 80,
        # Weighting the minority class costs accuracy on so small a set (546 images).
        "class_weights": False,
    },
}

SEED = 20261129


class Net(nn.Module):
    """A small VGG-style CNN for 28x28 grayscale images, with the calibrated softmax in the graph."""

    def __init__(self, classes):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(1, 32), block(32, 32), nn.MaxPool2d(2),  # 14x14
            block(32, 64), block(64, 64), nn.MaxPool2d(2),  # 7x7
            block(64, 128), block(128, 128),
        )
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(128, classes)
        self.register_buffer("temperature", torch.ones(1))

    def logits(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(self.dropout(x))

    def forward(self, x):
        return F.softmax(self.logits(x) / self.temperature, dim=1)


def augment(x, generator):
    """Random small rotations, shifts and zooms, and brightness and contrast jitter (no flips: anatomy has sides)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) - 0.5) * (2 * math.radians(10))
    scale = 1 + (torch.rand(n, generator=generator) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * (2 * 2 / 14)  # up to 2 pixels
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    return x * contrast + brightness


def auc_binary(scores, labels):
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, with ties averaged."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = labels.sum()
    negatives = len(labels) - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def metrics(probabilities, labels):
    classes = probabilities.shape[1]
    acc = float((probabilities.argmax(1) == labels).mean())
    if classes == 2:
        auc = auc_binary(probabilities[:, 1], labels)
    else:
        auc = float(np.mean([auc_binary(probabilities[:, c], (labels == c).astype(int)) for c in range(classes)]))
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    ece = 0.0
    for low in np.linspace(0, 1, 11)[:-1]:
        in_bin = (confidence > low) & (confidence <= low + 0.1)
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return {"n": int(len(labels)), "acc": acc, "auc": auc, "ece": float(ece)}


def predict(model, images):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[i : i + 512]) for i in range(0, len(images), 512)]).numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=sorted(DATASETS))
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "medmnist"))
    parser.add_argument("--out", default=os.path.join(here, "repository"))
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    spec = DATASETS[args.dataset]

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(SEED)

    data = np.load(os.path.join(args.data, f"{args.dataset}_trainval.npz"))
    mean = float(data["train_images"].mean() / 255)
    std = float(data["train_images"].std() / 255)

    def tensor(images):
        return ((torch.from_numpy(images).float() / 255 - mean) / std).unsqueeze(1)

    images = tensor(data["train_images"])
    labels = torch.from_numpy(data["train_labels"].ravel().astype(np.int64))
    permutation = torch.randperm(len(images), generator=generator)
    held = permutation[: len(images) // 10]
    kept = permutation[len(images) // 10 :]
    train_x, train_y = images[kept], labels[kept]
    hold_x, hold_y = images[held], labels[held].numpy()
    val_x, val_y = tensor(data["val_images"]), data["val_labels"].ravel().astype(np.int64)

    classes = len(spec["labels"])
    counts = torch.bincount(train_y, minlength=classes).float()
    class_weights = counts.sum() / (classes * counts) if spec.get("class_weights", True) else None
    model = Net(classes)
    epochs = args.epochs or spec["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(train_x) / 64)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    best = (-1.0, None, 0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            x = augment(train_x[batch], generator)
            loss = F.cross_entropy(model.logits(x), train_y[batch], weight=class_weights, label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss) * len(batch)
        held_metrics = metrics(predict(model, hold_x), hold_y)
        score = held_metrics["auc"] + held_metrics["acc"]
        if score >= best[0]:
            best = (score, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        print(f"epoch {epoch + 1:3d} loss {total / len(order):.4f} held-out acc {held_metrics['acc']:.4f} auc {held_metrics['auc']:.4f}", flush=True)
    model.load_state_dict(best[1])
    print(f"kept epoch {best[2] + 1}")

    # Temperature scaling on the held-out part of the training split (Guo et al. 2017).
    model.eval()
    with torch.no_grad():
        hold_logits = model.logits(hold_x)
    hold_targets = torch.from_numpy(hold_y)
    best_t, best_nll = 1.0, float("inf")
    for t in np.arange(0.2, 4.001, 0.01):
        nll = float(F.cross_entropy(hold_logits / float(t), hold_targets))
        if nll < best_nll:
            best_t, best_nll = float(round(t, 2)), nll
    uncalibrated = metrics(predict(model, val_x), val_y)
    model.temperature.fill_(best_t)
    validation = metrics(predict(model, val_x), val_y)
    print(f"temperature {best_t}; validation {json.dumps(validation)}; before calibration ece {uncalibrated['ece']:.4f}")

    version_dir = os.path.join(args.out, spec["name"], "1")
    os.makedirs(version_dir, exist_ok=True)
    onnx_path = os.path.join(version_dir, "model.onnx")
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        onnx_path,
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=13,
        do_constant_folding=True,
    )
    import onnx

    onnx_model = onnx.load(onnx_path)
    onnx.checker.check_model(onnx_model)
    # Strip the producer's version strings so the file depends only on the weights and the graph.
    onnx_model.producer_version = ""
    onnx.save(onnx_model, onnx_path)
    with open(onnx_path, "rb") as handle:
        sha256 = hashlib.sha256(handle.read()).hexdigest()

    config = {
        "name": spec["name"],
        "version": "1",
        "title": spec["title"],
        "platform": "onnxruntime",
        "input": {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
        "output": {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
        "preprocessing": {
            "colorSpace": "grayscale",
            "width": 28,
            "height": 28,
            "crop": "center-square",
            "resize": "area",
            "scale": 1 / 255,
            "mean": round(mean, 6),
            "std": round(std, 6),
        },
        "labels": spec["labels"],
        "modality": spec["modality"],
        "bodySite": spec["body_site"],
        "intendedPatients": spec["intended_patients"],
        "intendedUse": "Decision support for trained clinicians, not a diagnosis. Research prototype trained on MedMNIST v2 (28x28); not validated for clinical use.",
        "training": {
            "dataset": f"MedMNIST v2 {args.dataset} (CC BY 4.0)",
            "seed": SEED,
            "epochs": epochs,
            "keptEpoch": best[2] + 1,
            "temperature": best_t,
        },
        "validation": {k: round(v, 4) if isinstance(v, float) else v for k, v in validation.items()},
        "sha256": sha256,
    }
    with open(os.path.join(version_dir, "config.json"), "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    print(f"wrote {onnx_path} sha256 {sha256}")


if __name__ == "__main__":
    sys.exit(main())

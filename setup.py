"""jsr-tf: joint search and recommendation on TensorFlow (tf_keras + TFRS + Beam)."""

import setuptools

REQUIRED = [
    "tensorflow==2.21.*",
    "tf-keras==2.21.*",
    "tensorflow-recommenders==0.7.*",
    "tensorflow-datasets>=4.9",
    "apache-beam==2.77.*",
    "google-crc32c>=1.5",
    "absl-py>=2.0",
    "numpy>=1.26",
    "psutil>=5.9",
    "tensorboard==2.21.*",  # tf.summary / the TensorBoard callback; TF 2.21 no longer pulls it in
    "matplotlib>=3.8",  # jsr-compare's results.png
    "importlib_resources",  # tensorflow-datasets needs it (via etils) but does not declare it
]

EXTRAS = {
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100"],
    "serving": ["tensorflow-serving-api==2.21.*"],
    # Google Cloud: DataflowRunner and gs:// paths (README, "Run on Dataflow"). `make test`
    # installs it to build the Dataflow job graphs offline (tests/test_dataflow_graph.py).
    "gcp": ["apache-beam[gcp]==2.77.*"],
}

setuptools.setup(
    name="jsr-tf",
    version="0.1.0",
    description="Joint search and recommendation (UniSAR and baselines) in TensorFlow.",
    python_requires=">=3.10",
    # The design card's top-level folders pipelines/ and export/ install as jsr_tf.pipelines and
    # jsr_tf.export (no top-level packages named `pipelines` or `export` in site-packages).
    packages=setuptools.find_packages(include=["jsr_tf", "jsr_tf.*"]) + [
        "jsr_tf.pipelines", "jsr_tf.export"],
    package_dir={"jsr_tf.pipelines": "pipelines", "jsr_tf.export": "export"},
    package_data={"jsr_tf.export": ["*.config"]},
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "jsr-simulate=jsr_tf.cli.simulate:run",
            "jsr-preprocess=jsr_tf.pipelines.preprocess:main",
            "jsr-train=jsr_tf.cli.train:run",
            "jsr-evaluate=jsr_tf.cli.evaluate:run",
            "jsr-export=jsr_tf.export.cli:run",
            "jsr-compare=jsr_tf.cli.compare:run",
            "jsr-neighbours=jsr_tf.pipelines.neighbours:main",
            "jsr-neighbour-features=jsr_tf.pipelines.neighbour_features:main",
            "jsr-dense-neighbours=jsr_tf.pipelines.dense_neighbours:main",
            "jsr-neighbour-serving-table=jsr_tf.pipelines.neighbour_serving_table:main",
        ],
    },
)

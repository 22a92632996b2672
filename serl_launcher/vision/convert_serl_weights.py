"""Convert SERL's pickled ResNet-10 weights (`resnet10_params.pkl`) into this project's safe format.

    python -m serl_launcher.vision.convert_serl_weights resnet10_params.pkl resnet10.msgpack

WARNING: unpickling runs any code the file contains. This command exists only because SERL ships
its weights that way; run it only on a file you trust. Nothing else in the project unpickles.

The conversion maps SERL's parameter names (conv_init, norm_init, ResNetBlock_i/{Conv_0, Conv_1,
MyGroupNorm_0, MyGroupNorm_1, conv_proj, norm_proj}) onto this project's ResNet10Backbone. It is
tested with files made in that layout, not with SERL's actual download (unavailable here).
"""
import argparse
import sys

from serl_launcher.vision.pretrained import plain_tree, save_backbone

SERL_BLOCK_NAMES = {"Conv_0": "conv1", "MyGroupNorm_0": "norm1", "Conv_1": "conv2", "MyGroupNorm_1": "norm2",
                    "conv_proj": "conv_proj", "norm_proj": "norm_proj"}


def serl_to_backbone(serl_params: dict) -> dict:
    """SERL's ResNetEncoder parameter tree (resnetv1-10) as this project's ResNet10Backbone's."""
    params = serl_params.get("params", serl_params)
    converted = {"conv_init": params["conv_init"], "norm_init": params["norm_init"]}
    for stage in range(4):
        block = params[f"ResNetBlock_{stage}"]
        unknown = set(block) - set(SERL_BLOCK_NAMES)
        if unknown:
            raise ValueError(f"ResNetBlock_{stage} has parameters {sorted(unknown)} this conversion does not know")
        converted[f"block_{stage}"] = {SERL_BLOCK_NAMES[name]: value for name, value in block.items()}
    return plain_tree(converted)


def convert(pickle_path: str, output_path: str) -> None:
    import pickle  # noqa: S403  (the one explicit, user-requested unpickling in the project)

    print(f"WARNING: unpickling {pickle_path} runs any code it contains; convert only files you trust.",
          file=sys.stderr)
    with open(pickle_path, "rb") as file:
        serl_params = pickle.load(file)  # noqa: S301
    save_backbone(output_path, serl_to_backbone(serl_params))
    print(f"wrote {output_path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pickle_path")
    parser.add_argument("output_path")
    args = parser.parse_args(argv)
    convert(args.pickle_path, args.output_path)


if __name__ == "__main__":
    main()

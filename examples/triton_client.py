"""Ask a served fastdaf model (`fastdaf serve`, or Triton running an `fastdaf export-triton` repository)
for the sentiment of one utterance, with nothing but `tritonclient` and numpy/soundfile.

    python examples/triton_client.py --text "I love it" --audio clip.wav [--url 127.0.0.1:8000] [--grpc]

Each input is optional (send text, audio or both); audio goes as float32 mono samples with its
sampling rate. A bad request comes back as an error naming what was wrong (HTTP 400 / gRPC INVALID_ARGUMENT).
"""

import argparse
import json
import sys

import numpy as np
import soundfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8000", help="host:port (the gRPC port with --grpc)")
    parser.add_argument("--grpc", action="store_true", help="use gRPC instead of HTTP")
    parser.add_argument("--text", default=None)
    parser.add_argument("--audio", default=None, help="an audio file soundfile reads (wav, flac, ogg)")
    args = parser.parse_args()
    if args.grpc:
        import tritonclient.grpc as triton
    else:
        import tritonclient.http as triton

    inputs = []
    if args.text is not None:
        text = np.array([[args.text.encode("utf-8")]], dtype=object)  # BYTES [batch=1, 1]
        inputs.append(triton.InferInput("text", list(text.shape), "BYTES"))
        inputs[-1].set_data_from_numpy(text)
    if args.audio is not None:
        samples, rate = soundfile.read(args.audio, dtype="float32", always_2d=True)
        audio = samples.mean(axis=1)[None]  # FP32 [batch=1, samples], mono
        inputs.append(triton.InferInput("audio", list(audio.shape), "FP32"))
        inputs[-1].set_data_from_numpy(audio)
        inputs.append(triton.InferInput("sampling_rate", [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(np.array([[rate]], dtype=np.int32))

    client = triton.InferenceServerClient(args.url)
    try:
        result = client.infer("fastdaf", inputs)
    except triton.InferenceServerException as exc:
        print(f"the server refused the request: {exc.message()}", file=sys.stderr)
        return 1
    config = client.get_model_config("fastdaf")
    params = (
        config["parameters"]
        if isinstance(config, dict)
        else {k: {"string_value": v.string_value} for k, v in config.config.parameters.items()}
    )
    modalities = params["weights_order"]["string_value"].split(",")  # the order of the `weights` output
    notes = result.as_numpy("notes")  # a JSON list of strings per row, e.g. that audio without speech was ignored
    print(
        json.dumps(
            {
                "score": float(result.as_numpy("score")[0, 0]),
                "label": result.as_numpy("label")[0, 0].decode(),
                "weights": dict(zip(modalities, result.as_numpy("weights")[0].tolist())),
                "notes": json.loads(notes[0, 0])
                if notes is not None
                else [],  # None from a server exported before notes
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

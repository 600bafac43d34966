"""A stand-in for onnxruntime-gpu's device tensors and IO binding, over real CPU sessions.

FakeOrt.OrtValue keeps its data as numpy and a device name; every host<->device transfer
(`ortvalue_from_numpy` to a non-CPU device, `update_inplace`, `numpy()` of a device value) is
logged with the tensor's size, so a test can count which copies a generation makes. Sessions
wrap a real onnxruntime CPU InferenceSession: what runs is the exported graph, bound inputs are
read from the fake device values without a logged copy (they are on the device already) and
outputs bound with `bind_output(name, "cuda")` are created as device values.
"""

from __future__ import annotations

import numpy as np


class FakeOrt:
    def __init__(self):
        self.transfers: list[tuple[str, tuple]] = []  # ("h2d" | "d2h", shape)
        fake = self

        class OrtValue:
            def __init__(self, array: np.ndarray, device: str):
                self._array, self._device = array, device

            @staticmethod
            def ortvalue_from_numpy(array, device="cpu", device_id=0):
                if device != "cpu":
                    fake.transfers.append(("h2d", array.shape))
                return OrtValue(np.array(array), device)

            @staticmethod
            def ortvalue_from_shape_and_type(shape, dtype, device="cpu", device_id=0):
                return OrtValue(np.zeros(shape, dtype), device)  # an allocation, no copy

            def update_inplace(self, array):
                assert array.shape == self._array.shape, "update_inplace keeps the shape and address"
                if self._device != "cpu":
                    fake.transfers.append(("h2d", array.shape))
                self._array[...] = array

            def numpy(self):
                if self._device != "cpu":
                    fake.transfers.append(("d2h", self._array.shape))
                return self._array.copy()

            def shape(self):
                return list(self._array.shape)

            def device_name(self):
                return self._device

        self.OrtValue = OrtValue

    def session(self, real_session) -> "FakeSession":
        return FakeSession(self, real_session)

    def h2d(self) -> list[tuple]:
        return [shape for kind, shape in self.transfers if kind == "h2d"]

    def d2h(self) -> list[tuple]:
        return [shape for kind, shape in self.transfers if kind == "d2h"]


class FakeBinding:
    def __init__(self, fake: FakeOrt):
        self.fake = fake
        self.inputs: dict = {}
        self.outputs: dict = {}  # name -> (device, OrtValue or None until a run)

    def bind_ortvalue_input(self, name, value):
        self.inputs[name] = value

    def bind_output(self, name, device_type="cpu", device_id=0):
        self.outputs[name] = (device_type, None)

    def bind_ortvalue_output(self, name, value):
        self.outputs[name] = (value.device_name(), value)

    def get_outputs(self):
        return [value for _, value in self.outputs.values()]


class FakeSession:
    def __init__(self, fake: FakeOrt, real_session):
        self.fake, self.real = fake, real_session
        self.runs = 0

    def get_outputs(self):
        return self.real.get_outputs()

    def io_binding(self):
        return FakeBinding(self.fake)

    def run_with_iobinding(self, binding: FakeBinding):
        self.runs += 1
        feeds = {name: value._array for name, value in binding.inputs.items()}  # device-resident: no copy
        names = list(binding.outputs)
        results = self.real.run(names, feeds)
        for name, result in zip(names, results):
            device, value = binding.outputs[name]
            if value is None:
                binding.outputs[name] = (device, self.fake.OrtValue(result, device))
            else:
                assert value._array.shape == result.shape, "a preallocated output must fit"
                value._array[...] = result


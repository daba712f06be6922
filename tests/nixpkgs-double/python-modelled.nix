# The python3Packages the variant's closure reaches whose nixpkgs expressions involve torch, modelled with
# the dependencies, test inputs, checks and import checks nixpkgs gives them, so a test can see which
# derivations a variant's torch reaches and which of them run torch at build time. Every other package
# of python-names.nix stays a bare stand-in (no dependencies, no checks).
#
# Sources (NixOS/nixpkgs pkgs/development/python-modules/<name>/default.nix; the index holds no copy at
# the pin 0182a361 itself, so these are the stored copies nearest to it, read on 2026-11-27):
#   torchao 0.14.1 and 0.15.0: dependencies [ torch ]; nativeCheckInputs bitsandbytes expecttest fire
#     parameterized pytest-xdist pytestCheckHook tabulate transformers unittest-xml-reporting; checks on
#     (doCheck unset); pythonImportsCheck [ "torchao" ]. (The review also names torchvision among them;
#     neither stored copy has it.)
#   compressed-tensors 0.13.0, 0.14.0.1: dependencies frozendict loguru pydantic torch transformers;
#     doCheck = true; nativeCheckInputs nbconvert nbformat pytestCheckHook (0.17.1 adds accelerate);
#     pythonImportsCheck [ "compressed_tensors" ].
#   safetensors 0.6.2: nativeCheckInputs h5py numpy pytestCheckHook torch fsspec (torch only in its tests
#     and optional-dependencies); pythonImportsCheck [ "safetensors" ].
#   outlines 0.1.13: dependencies include torch and transformers; checkPhase `python3 -c 'import outlines'`.
#   transformers: dependencies huggingface-hub numpy packaging pyyaml regex requests safetensors tokenizers
#     tqdm (torch only in optional-dependencies). Its checks are not modelled (not established here).
#   torchvision 0.25.0 and 0.27.0: buildPythonPackage.override { stdenv = torch.stdenv; }; buildInputs
#     [ libjpeg_turbo libpng torch.cxxdev ]; dependencies numpy pillow torch scipy; env
#     TORCH_CUDA_ARCH_LIST = concatStringsSep ";" torch.cudaCapabilities, FORCE_CUDA = 1 with cudaSupport;
#     doCheck = false; nativeCheckInputs [ pytest writableTmpDirAsHomeHook ]; pythonImportsCheck.
#     It takes `torch` from the package set, so packageOverrides' torch reaches it.
#   bitsandbytes 0.44.1: takes torch (builds against torch.cudaPackages), dependencies scipy torch.
#   accelerate: dependencies include torch (PyPI: requires torch).
{
  lib,
  pfinal,
  buildPythonPackage,
}:
let
  p = pfinal;
  model =
    pname: args:
    buildPythonPackage (
      {
        inherit pname;
        version = "0-double";
        pyproject = true;
      }
      // args
    );
in
{
  torchao = model "torchao" {
    dependencies = [ p.torch ];
    nativeCheckInputs = [
      p.bitsandbytes
      p.expecttest
      p.fire
      p.parameterized
      p.pytest-xdist
      p.pytestCheckHook
      p.tabulate
      p.transformers
      p.unittest-xml-reporting
    ];
    pythonImportsCheck = [ "torchao" ];
  };
  compressed-tensors = model "compressed-tensors" {
    dependencies = [
      p.pydantic
      p.torch
      p.transformers
    ];
    doCheck = true;
    nativeCheckInputs = [
      p.nbconvert
      p.nbformat
      p.pytestCheckHook
    ];
    pythonImportsCheck = [ "compressed_tensors" ];
  };
  safetensors = model "safetensors" {
    nativeCheckInputs = [
      p.h5py
      p.numpy
      p.pytestCheckHook
      p.torch
      p.fsspec
    ];
    pythonImportsCheck = [ "safetensors" ];
  };
  outlines = model "outlines" {
    dependencies = [
      p.interegular
      p.jinja2
      p.numpy
      p.pydantic
      p.requests
      p.torch
      p.transformers
    ];
    checkPhase = "python3 -c 'import outlines'";
  };
  transformers = model "transformers" {
    dependencies = [
      p.huggingface-hub
      p.numpy
      p.packaging
      p.pyyaml
      p.requests
      p.safetensors
      p.tokenizers
      p.tqdm
    ];
  };
  torchvision = model "torchvision" {
    buildInputs = [ p.torch.cxxdev ];
    dependencies = [
      p.numpy
      p.pillow
      p.torch
      p.scipy
    ];
    env = lib.optionalAttrs p.torch.cudaSupport {
      TORCH_CUDA_ARCH_LIST = lib.concatStringsSep ";" p.torch.cudaCapabilities;
      FORCE_CUDA = "1";
    };
    doCheck = false;
    nativeCheckInputs = [ p.pytest ];
    pythonImportsCheck = [ "torchvision" ];
  };
  bitsandbytes = model "bitsandbytes" {
    dependencies = [
      p.scipy
      p.torch
    ];
  };
  accelerate = model "accelerate" {
    dependencies = [
      p.numpy
      p.packaging
      p.psutil
      p.pyyaml
      p.torch
    ];
  };
}

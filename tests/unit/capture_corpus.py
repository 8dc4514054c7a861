"""A corpus of training output in the printed forms of well-known projects.

Written here from each project's documented output format (the format strings in its
training loop or logger, and the examples in its docs), with made-up numbers. Three lists:

- :data:`METRIC_LINES`: lines that carry a step and a loss, with both expected;
- :data:`NON_METRIC_LINES`: lines, each alone, that must yield nothing (log prefixes,
  tracebacks, warnings, banners, download bars, another rank's output...);
- :data:`NON_METRIC_BLOCKS`: runs of lines that yield nothing only read in order (a traceback's
  echoed source, an argument dump, a banner block).
"""

from __future__ import annotations

# (source, line, expected step (None: the line has none, the tracker infers it), loss)
METRIC_LINES: list[tuple[str, str, int | None, float]] = [
    ("bare pairs", "step 10 loss 1.0853", 10, 1.0853),
    ("bare pairs, more", "step 20 loss 0.9431 lr 0.0003", 20, 0.9431),
    ("bare pairs, rank 0 of torch.distributed", "[rank0]: step 30 loss 0.8123", 30, 0.8123),
    (
        "torchrun --tee, rank 0",
        "[default0]:iter 140: loss 3.9012, time 40.00ms, mfu 10.00%",
        140,
        3.9012,
    ),
    ("nanoGPT train", "iter 100: loss 4.2031, time 45.12ms, mfu 12.34%", 100, 4.2031),
    ("nanoGPT eval", "step 2000: train loss 1.7626, val loss 1.8856", 2000, 1.7626),
    (
        "llm.c train_gpt2.py",
        "step    1/74 | train loss 4.677151 | norm 20.4528 | lr 6.00e-04 | "
        "(3036.73 ms | 21586 tok/s)",
        1,
        4.677151,
    ),
    ("llm.c train_gpt2.c", "step 1: train loss 4.677969 (took 1779.562000 ms)", 1, 4.677969),
    (
        "llm.c train_gpt2.cu",
        "step    2/74 | loss 4.512345 (+0.00z)| norm 20.4528 (+0.00z)| lr 6.00e-04 | 3036.73 ms "
        "| 38.6% bf16 MFU | 21586 tok/s",
        2,
        4.512345,
    ),
    (
        "HF Trainer 4.x",
        "{'loss': 2.3456, 'grad_norm': 1.234, 'learning_rate': 4.9e-05, 'epoch': 0.1}",
        None,
        2.3456,
    ),
    (
        "HF Trainer 5.x (quoted values)",
        "{'loss': '4.855', 'grad_norm': '1.23', 'learning_rate': '4.9e-05', 'epoch': '0.1'}",
        None,
        4.855,
    ),
    (
        "Lightning progress bar",
        "Epoch 0:  45%|████▌     | 45/100 [00:05<00:06,  8.12it/s, v_num=0, train_loss=0.530]",
        45,
        0.53,
    ),
    (
        "Lightning on_step and on_epoch",
        "Epoch 0: 100%|██████████| 100/100 [00:01<00:00, 70.23it/s, v_num=0, "
        "train_loss_step=0.412, val_loss=0.398, train_loss_epoch=0.455]",
        100,
        0.412,
    ),
    (
        "fairseq json-less log",
        "2020-10-01 12:00:00 | INFO | train_inner | epoch 001:    100 / 1563 loss=9.123, "
        "nll_loss=8.912, ppl=481.6, wps=12345.6, ups=3.41, wpb=3620.2, bsz=128, num_updates=100, "
        "lr=1.25e-05, gnorm=1.234, loss_scale=128, train_wall=30, gb_free=10.2, wall=35",
        100,
        9.123,
    ),
    (
        "fairseq simple log",
        "| epoch 001 | loss 8.512 | nll_loss 8.301 | ppl 315.4 | wps 12345 | ups 3 | "
        "wpb 3620.200 | bsz 128.000 | num_updates 1563 | lr 0.0005 | gnorm 1.111 | wall 480",
        1563,
        8.512,
    ),
    (
        "timm train",
        "Train: 0 [ 100/1251 (  8%)]  Loss: 6.935 (6.93)  Time: 0.345s,  742.03/s  "
        "(0.351s,  729.12/s)  LR: 1.000e-04  Data: 0.012 (0.015)",
        100,
        6.935,
    ),
    (
        "torchvision classification reference",
        "Epoch: [0]  [  10/5005]  eta: 1:23:45  lr: 0.1  img/s: 123.45  loss: 6.9078 (6.9101)  "
        "acc1: 0.0000 (0.0852)  acc5: 0.7812 (0.5114)  time: 0.9876  data: 0.1234  max mem: 10234",
        10,
        6.9078,
    ),
    (
        "torchvision detection reference",
        "Epoch: [0]  [  20/1833]  eta: 0:40:12  lr: 0.000400  loss: 1.2345 (1.4567)  "
        "loss_classifier: 0.5012 (0.6012)  loss_box_reg: 0.3012 (0.3123)  time: 1.3012  "
        "data: 0.0123  max mem: 3000",
        20,
        1.2345,
    ),
    (
        "detectron2 (total_loss is the loss)",
        "[12/07 14:41:08 d2.utils.events]:  eta: 0:10:32  iter: 19  total_loss: 2.104  "
        "loss_cls: 0.8123  loss_box_reg: 0.6234  loss_rpn_cls: 0.1234  loss_rpn_loc: 0.0512  "
        "time: 0.3456  last_time: 0.3321  data_time: 0.0123  lr: 0.00039962  max_mem: 2345M",
        19,
        2.104,
    ),
    (
        "mmengine by epoch",
        "12/07 14:41:08 - mmengine - INFO - Epoch(train)  [1][ 50/500]  base_lr: 1.0000e-02 "
        "lr: 1.0000e-02  eta: 0:10:00  time: 0.2345  data_time: 0.0123  memory: 1234  "
        "loss: 0.5123  loss_cls: 0.3012",
        50,
        0.5123,
    ),
    (
        "mmengine by iteration",
        "12/07 14:41:08 - mmengine - INFO - Iter(train) [  50/1000]  lr: 1.0000e-02  "
        "eta: 0:05:00  time: 0.2000  data_time: 0.0100  memory: 1000  loss: 0.7321",
        50,
        0.7321,
    ),
    (
        "Keras 2",
        "10/100 [==>...........................] - ETA: 5s - loss: 0.3012 - accuracy: 0.9000",
        10,
        0.3012,
    ),
    (
        "Keras 3",
        "  20/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 2ms/step - accuracy: 0.5123 - loss: 1.4321",
        20,
        1.4321,
    ),
    ("logging basicConfig", "INFO:__main__:step 30 loss 0.8123", 30, 0.8123),
    (
        "logging with time and name",
        "2024-05-01 12:00:01,123 - INFO - train - step 40 | loss 0.7012",
        40,
        0.7012,
    ),
    (
        "HF example scripts' logging",
        "05/01/2024 12:00:01 - INFO - __main__ - step 45 loss = 0.6912",
        45,
        0.6912,
    ),
    (
        "hydra logging",
        "[2024-05-01 12:00:01,123][__main__][INFO] - step=50 loss=0.6543",
        50,
        0.6543,
    ),
    (
        "loguru",
        "2024-05-01 12:00:01.123 | INFO     | __main__:train:42 - iter 60 loss 0.6101",
        60,
        0.6101,
    ),
    ("absl", "I1207 14:41:08.123456 140234 train.py:88] step 70, loss = 0.5912", 70, 0.5912),
    ("PyTorch MNIST example", "Train Epoch: 1 [640/60000 (1%)]\tLoss: 0.512345", 640, 0.512345),
    (
        "PyTorch word language model",
        "| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 30.12 | loss  7.63 | ppl  2062.59",
        200,
        7.63,
    ),
    ("Backprop JSON", '{"step": 80, "loss": 0.45}', 80, 0.45),
    ("tqdm postfix", " 45%|████▌     | 45/100 [00:05<00:06,  8.12it/s, loss=0.53]", 45, 0.53),
    ("Step n/N table", "Step 110/1000 | Loss: 0.3921 | LR: 3.0e-04", 110, 0.3921),
    ("accelerate-style", "epoch 0 step 120: loss=0.4123", 120, 0.4123),
    (
        "PyTorch tutorials",
        "Epoch [1/10], Step [130/600], Loss: 0.2310",
        130,
        0.231,
    ),
]

NON_METRIC_LINES: list[tuple[str, str]] = [
    # log-record prefixes and distributed start-up
    ("torchrun", "W1202 23:16:16.530000 20880 torch/distributed/run.py:874] "),
    ("torchrun", "W1202 23:16:16.530000 20880 torch/distributed/run.py:874] ****************"),
    (
        "torchrun",
        "W1202 23:16:16.530000 20880 torch/distributed/run.py:874] Setting OMP_NUM_THREADS "
        "environment variable for each process to be 1 in default, to avoid your system being "
        "overloaded, please further tune the variable for optimal performance in your "
        "application as needed.",
    ),
    (
        "torchrun (old)",
        "Setting OMP_NUM_THREADS environment variable for each process to be 1 in default, to "
        "avoid your system being overloaded, please further tune the variable for optimal "
        "performance in your application as needed.",
    ),
    (
        "torch.distributed",
        "I1202 23:16:16.530000 20880 torch/distributed/elastic/agent/server/api.py:525] "
        "[default] Starting worker group",
    ),
    (
        "c10d socket",
        "[W1202 23:16:17.123456 20881 socket.cpp:752] [c10d] The client socket has failed to "
        "connect to [localhost]:29500 (errno: 99 - Cannot assign requested address).",
    ),
    (
        "c10d socket (old)",
        "[W socket.cpp:464] [c10d] The server socket has failed to bind to [::]:29500 "
        "(errno: 98 - Address already in use).",
    ),
    (
        "c10 warning with rank",
        "[rank0]:[W1202 23:16:20.000000 20881 ProcessGroupNCCL.cpp:4115] Warning: "
        "destroy_process_group() was not called before program exit",
    ),
    (
        "DDP warning",
        "[W reducer.cpp:1360] Warning: find_unused_parameters=True was specified in DDP "
        "constructor, but did not find any unused parameters in the forward pass.",
    ),
    (
        "torchrun failure",
        "E1202 23:16:20.000000 20880 torch/distributed/elastic/multiprocessing/api.py:869] "
        "failed (exitcode: 1) local_rank: 0 (pid: 20881) of binary: /usr/bin/python3",
    ),
    (
        "torchrun failure (old)",
        "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: 1) local_rank: 0 "
        "(pid: 2093) of binary: /usr/bin/python3",
    ),
    ("a warning record", "WARNING:root:loss scale overflow at step 30, skipping"),
    (
        "HF example scripts' warning",
        "05/01/2024 12:00:01 - WARNING - __main__ - Process rank: 0, device: cuda:0, n_gpu: 1, "
        "distributed training: False, 16-bits training: False",
    ),
    ("another rank", "[rank1]: step 10 loss 1.0853"),
    ("another rank (--tee)", "[default1]:iter 140: loss 3.9, time 40.00ms, mfu 10.00%"),
    # tracebacks and exceptions
    ("traceback", '  File "/tmp/train.py", line 13, in <module>'),
    (
        "traceback",
        '  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, '
        "in _wrapped_call_impl",
    ),
    ("traceback, torchrun", '[rank0]:   File "/tmp/train.py", line 42, in <module>'),
    ("echoed source", '    print(json.dumps({"step": step, "loss": 1.0/step}), flush=True)'),
    ("echoed source", "    x = torch.randn(4, 16)"),
    ("echoed source", "  self.scaler = torch.cuda.amp.GradScaler(init_scale=2**16)"),
    (
        "torchrun exception",
        "torch.distributed.elastic.multiprocessing.api.SignalException: Process 20880 got "
        "signal: 2",
    ),
    ("exception", "RuntimeError: CUDA error: device-side assert triggered at step 5"),
    (
        "exception",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
        "total capacity of 79.15 GiB of which 1.23 GiB is free.",
    ),
    ("exception", "SystemExit: 1"),
    (
        "exception",
        "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__ at 0x7f1234567890>",
    ),
    # warnings
    (
        "UserWarning",
        "/usr/lib/python3.11/site-packages/torch/utils/data/dataloader.py:557: UserWarning: "
        "This DataLoader will create 4 worker processes in total. Our suggested max number of "
        "worker in current system is 2, which is smaller than what this DataLoader is going to "
        "create.",
    ),
    (
        "UserWarning",
        "/opt/venv/lib/python3.11/site-packages/torch/cuda/__init__.py:129: UserWarning: CUDA "
        "initialization: Found no NVIDIA driver on your system. (Triggered internally at "
        "../c10/cuda/CUDAFunctions.cpp:108.)",
    ),
    (
        "FutureWarning",
        "/tmp/train.py:12: FutureWarning: `torch.cuda.amp.GradScaler(args...)` is deprecated. "
        "Please use `torch.amp.GradScaler('cuda', args...)` instead.",
    ),
    # device and library banners
    ("Lightning", "GPU available: True (cuda), used: True"),
    ("Lightning", "TPU available: False, using: 0 TPU cores"),
    ("Lightning", "HPU available: False, using: 0 HPUs"),
    ("Lightning", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1]"),
    ("Lightning", "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"),
    ("Lightning", "Using 16bit Automatic Mixed Precision (AMP)"),
    ("Lightning", "Seed set to 42"),
    ("Lightning", "`Trainer.fit` stopped: `max_epochs=3` reached."),
    ("Lightning summary", "0 | layer | Linear | 66     | train"),
    ("Lightning summary", "66        Trainable params"),
    ("Lightning summary", "0         Non-trainable params"),
    ("Lightning summary", "0.000     Total estimated model params size (MB)"),
    (
        "Lightning",
        "You are using a CUDA device ('NVIDIA A100-SXM4-40GB') that has Tensor Cores. To "
        "properly utilize them, you should set `torch.set_float32_matmul_precision('medium' | "
        "'high')` which will trade-off precision for performance.",
    ),
    (
        "TensorFlow device",
        "Created device /job:localhost/replica:0/task:0/device:GPU:0 with 14792 MB memory:  -> "
        "device: 0, name: Tesla T4, pci bus id: 0000:00:04.0, compute capability: 7.5",
    ),
    (
        "device properties",
        "_CudaDeviceProperties(name='NVIDIA H100 80GB HBM3', major=9, minor=0, "
        "total_memory=81004MB, multi_processor_count=132)",
    ),
    ("NCCL", "NCCL version 2.21.5+cuda12.4"),
    ("NCCL", "node01:20880:20880 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>"),
    ("nanoGPT", "tokens per iteration will be: 491,520"),
    ("nanoGPT", "number of parameters: 10.65M"),
    ("nanoGPT", "num decayed parameter tensors: 26, with 10,740,096 parameters"),
    ("model repr", "    (wte): Embedding(50304, 768)"),
    ("model repr", "    (c_attn): Linear(in_features=768, out_features=2304, bias=True)"),
    ("model repr", "      (0-11): 12 x Block("),
    ("HF banner line", "  Num examples = 1,000"),
    ("HF banner line", "  Gradient Accumulation steps = 1"),
    ("HF banner line", "  Number of trainable parameters = 124,439,808"),
    # download and data-preparation bars, evaluation bars
    (
        "torchvision download",
        "Downloading https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz to "
        "./data/MNIST/raw/train-images-idx3-ubyte.gz",
    ),
    ("torchvision download", "100%|██████████| 9.91M/9.91M [00:00<00:00, 38.0MB/s]"),
    (
        "torchvision download",
        "Extracting ./data/MNIST/raw/train-images-idx3-ubyte.gz to ./data/MNIST/raw",
    ),
    ("datasets", "Map: 100%|██████████| 1000/1000 [00:00<00:00, 8123.45 examples/s]"),
    ("datasets", "Downloading data: 100%|██████████| 1.23G/1.23G [00:12<00:00, 98.7MB/s]"),
    (
        "datasets",
        "Generating train split: 100%|██████████| 36718/36718 [00:00<00:00, 512345.67 examples/s]",
    ),
    ("datasets", "Resolving data files: 100%|██████████| 18/18 [00:00<00:00, 123.45it/s]"),
    ("hub", "Fetching 3 files: 100%|██████████| 3/3 [00:00<00:00, 12.34it/s]"),
    ("transformers", "Loading checkpoint shards: 100%|██████████| 2/2 [00:01<00:00,  1.23it/s]"),
    ("Lightning", "Sanity Checking DataLoader 0: 100%|██████████| 2/2 [00:00<00:00, 50.00it/s]"),
    ("Lightning", "Validation DataLoader 0:  50%|█████     | 5/10 [00:00<00:00, 50.00it/s]"),
    ("Backprop's own", "Saving checkpoint to /tmp/x at step 5"),
    ("device line", "Using device: cuda:0"),
]

NON_METRIC_BLOCKS: list[tuple[str, list[str]]] = [
    (
        "graceful stop of a Python script",
        [
            "Traceback (most recent call last):",
            '  File "/tmp/train.py", line 13, in <module>',
            '    print(json.dumps({"step": step, "loss": 1.0/step}), flush=True)',
            "KeyboardInterrupt",
        ],
    ),
    (
        "Python 3.11+ traceback with carets and a chained exception",
        [
            "Traceback (most recent call last):",
            '  File "/tmp/train.py", line 30, in <module>',
            "    loss = 1.0 / (step - 5)",
            "           ~~~~^~~~~~~~~~~",
            "ZeroDivisionError: float division by zero",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            '  File "/tmp/train.py", line 33, in <module>',
            "    raise RuntimeError(f'loss {loss} at step {step}')",
            "RuntimeError: loss 0.5 at step 5",
        ],
    ),
    (
        "torchrun rank 0 traceback",
        [
            "[rank0]: Traceback (most recent call last):",
            '[rank0]:   File "/tmp/train.py", line 42, in <module>',
            "[rank0]:     loss = 0.5 * model(x).sum()",
            "[rank0]: KeyboardInterrupt",
        ],
    ),
    (
        "HF TrainingArguments dump",
        [
            "TrainingArguments(",
            "_n_gpu=1,",
            "adam_beta1=0.9,",
            "adam_beta2=0.999,",
            "adam_epsilon=1e-08,",
            "eval_steps=None,",
            "gradient_accumulation_steps=1,",
            "learning_rate=5e-05,",
            "logging_steps=10,",
            "max_steps=-1,",
            "num_train_epochs=3.0,",
            "per_device_train_batch_size=8,",
            "save_steps=500,",
            "seed=42,",
            "warmup_steps=0,",
            "weight_decay=0.0,",
            ")",
        ],
    ),
    (
        "HF start-of-training banner",
        [
            "***** Running training *****",
            "  Num examples = 1,000",
            "  Num Epochs = 3",
            "  Instantaneous batch size per device = 8",
            "  Total train batch size (w. parallel, distributed & accumulation) = 8",
            "  Gradient Accumulation steps = 1",
            "  Number of trainable parameters = 124,439,808",
        ],
    ),
    (
        "HF end-of-training digest",
        [
            "***** train metrics *****",
            "  epoch                    =        3.0",
            "  total_flos               =   1234GF",
            "  train_loss               =     0.4512",
            "  train_runtime            = 0:00:10.53",
            "  train_samples_per_second =    284.123",
            "  train_steps_per_second   =     35.512",
        ],
    ),
    (
        "a model's repr",
        [
            "GPT(",
            "  (transformer): ModuleDict(",
            "    (wte): Embedding(50304, 768)",
            "    (drop): Dropout(p=0.0, inplace=False)",
            "    (h): ModuleList(",
            "      (0-11): 12 x Block(",
            "        (ln_1): LayerNorm((768,), eps=1e-05, elementwise_affine=True)",
            "      )",
            "    )",
            "  )",
            "  (lm_head): Linear(in_features=768, out_features=50304, bias=False)",
            ")",
        ],
    ),
    (
        "a warning and its echoed source line",
        [
            "/tmp/train.py:21: UserWarning: loss is 0.5 at step 3",
            "  warnings.warn(f'loss is {loss} at step {step}')",
        ],
    ),
]

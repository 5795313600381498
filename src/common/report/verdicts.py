"""What the report and the notebooks conclude from their numbers, in French: two runs
compared image by image, and a run against its target (:mod:`common.results.comparison`).

A pair of runs is compared only on the same test images; otherwise the text says that they
were scored on different images and are not compared. On the same images: the difference in
points, its paired 95 % interval, McNemar's exact p-value and, the report making several
comparisons, Holm's adjusted p; "pas de différence décelable" when the adjusted p is not
below 5 % (no evidence of a difference, which is not evidence of equality).
"""

from __future__ import annotations

from common.config.study import SCRATCH
from common.report.presentation import interval, number, pct, points
from common.results.comparison import ALPHA, chosen_run, compare, compare_all, target_verdict

VERDICTS = {"reached": "atteint", "missed": "non atteint", "undecided": "indécis"}


def p_value(p: float) -> str:
    """A p-value in French: 'p = 0,003', 'p < 0,001', 'p = 1'."""
    if p < 0.001:
        return "p < 0,001"
    return "p = " + (number(p, 3).rstrip("0").rstrip(",") if p < 1 else "1")


def signed_interval(ci) -> str:
    """A paired interval of a difference, in points: '−2,1 à +5,3 points'."""
    def signed(v):
        return ("+" if v > 0 else "−" if v < 0 else "") + points(v)

    return f"{signed(ci[0])} à {signed(ci[1])} points"


def _que(title: str) -> str:
    return "qu'" if title[0] in "AEIOUÉ" else "que "


def pair_markdown(title_a: str, title_b: str, result: dict | None, caveat: str = "",
                  crops: tuple = (None, None)) -> str:
    """One comparison, or the sentence that says it is not made (``result`` None): on other
    test images, or on the same ones cropped otherwise (``crops``, each test set's)."""
    a, b = f"**{title_a}**", f"**{title_b}**"
    if result is None and None not in crops and crops[0] != crops[1]:
        return (f"{a} et {b} ont lu leurs images de test recadrées différemment "
                f"({crops[0]} contre {crops[1]}) : ce ne sont pas les mêmes entrées, nous ne "
                "les comparons pas.")
    if result is None:
        return (f"{a} et {b} ont été évalués sur des images de test différentes : nous ne "
                "les comparons pas.")
    stats = (f"différence {'+' if result['difference'] >= 0 else '−'}"
             f"{points(result['difference'])} points, IC 95 % apparié : "
             f"{signed_interval(result['ci95'])} ; McNemar exact : "
             f"{p_value(result['p_value'])}"
             + (f", ajustée (Holm, {number(result['comparisons'])} comparaisons) : "
                f"{p_value(result['p_adjusted'])}" if "p_adjusted" in result else "")
             + f" ; sur {number(result['n'])} images, "
             f"{number(result['only_a'])} bien classées par le premier seul, "
             f"{number(result['only_b'])} par le second seul")
    if not result["separated"]:
        return (f"Entre {a}{caveat} et {b}, pas de différence décelable sur ces images "
                f"({stats}).")
    verdict = "mieux" if result["difference"] > 0 else "moins bien"
    return f"{a}{caveat} fait {verdict} {_que(title_b)}{b} ({stats})."


def compare_chosen(collected: dict, a: str, b: str) -> dict | None:
    """The runs of notebooks ``a`` and ``b`` chosen on validation, compared (None when
    scored on different images)."""
    return compare(collected[a], chosen_run(collected[a]).name,
                   collected[b], chosen_run(collected[b]).name)


def compare_pairs(collected: dict, pairs) -> dict:
    """Each pair of ``pairs`` whose two notebooks have results, compared on validation's
    choices, all of them together adjusted with Holm (:func:`compare_all`): pair -> result
    (None when scored on different images)."""
    done = [(a, b) for a, b in pairs if collected.get(a) and collected.get(b)]
    results = compare_all([compare_chosen(collected, a, b) for a, b in done])
    return dict(zip(done, results))


def conclusions_markdown(collected: dict, pairs, titles: dict[str, str],
                         scratch=SCRATCH) -> str:
    """Each notebook's run chosen on validation with its interval, then each pair of
    ``pairs`` whose two notebooks have results, compared."""
    done = {n: p for n, p in collected.items() if p}
    lines = []
    for n, payload in done.items():
        run = chosen_run(payload)
        m = run.metrics
        random = "" if run.weights.pretrained or n in scratch else ", poids aléatoires"
        lines.append(f"- **{titles[n]}** : {pct(m.test_accuracy)} (IC 95 % : "
                     f"{interval(m.test_accuracy_ci95)}) sur le test (configuration "
                     f"{run.name}{random}).")
    text = ["Meilleur résultat de chaque expérience (configuration choisie sur la validation), "
            "avec son intervalle de confiance à 95 % (Wilson, sur le nombre d'images de test) :",
            "", *lines, "",
            "Nous ne comparons deux expériences que sur les mêmes images de test (même "
            "empreinte), image par image : la différence d'exactitude, son intervalle à 95 % "
            "apparié (Newcombe) et le test exact de McNemar sur les images que seule l'une "
            "des deux classe bien, sa p-valeur ajustée (méthode de Holm) pour l'ensemble des "
            f"comparaisons ; quand la p-valeur ajustée n'est pas sous {pct(ALPHA, 0)}, ces "
            "images ne décèlent pas de différence, ce qui ne prouve pas une égalité :", ""]
    for (a, b), result in compare_pairs(collected, pairs).items():
        pretrained = chosen_run(done[a]).weights.pretrained
        caveat = "" if pretrained or a in scratch else \
            " (poids aléatoires : sans vrai pré-entraînement)"
        crops = tuple(done[n].dataset.test_set.crop for n in (a, b))
        text.append("- " + pair_markdown(titles[a], titles[b], result, caveat, crops))
    return "\n".join(text)


def lesson_held(collected: dict, pairs, compared=None) -> bool:
    """Whether every pair (pretrained, scratch) of ``pairs`` has a pretrained run that beats
    the scratch one on the same images, Holm-adjusted McNemar p < 5 %; ``compared``: all the
    report's pairs, adjusted together (:func:`compare_pairs`), default ``pairs`` alone."""
    compared = compare_pairs(collected, compared or pairs)
    for a, b in pairs:
        if (a, b) not in compared:
            return False
        if not chosen_run(collected[a]).weights.pretrained:
            return False
        result = compared[(a, b)]
        if result is None or not result["separated"] or result["difference"] <= 0:
            return False
    return True


def target_markdown(run, target: float) -> str:
    """A run chosen on validation (a :class:`common.results.contract.Run`) against a target
    test accuracy, verdict from its 95 % interval: reached, missed or undecided."""
    m = run.metrics
    ci = m.test_accuracy_ci95
    verdict = target_verdict(ci, target)
    why = {"reached": f"la borne basse de l'intervalle ({pct(ci[0])}) atteint la cible",
           "missed": f"même la borne haute de l'intervalle ({pct(ci[1])}) reste en dessous",
           "undecided": "l'intervalle contient la cible : ce test ne suffit pas à trancher"}
    return (f"Nous visions au moins **{pct(target, 0)}** sur le test pour la configuration "
            f"choisie sur la validation, **{run.name}** : {pct(m.test_accuracy)} (IC "
            f"95 % : {interval(ci)}). Objectif **{VERDICTS[verdict]}** : {why[verdict]}.")

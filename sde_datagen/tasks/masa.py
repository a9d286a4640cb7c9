"""MASA: multi-aspect sentiment of Chinese restaurant reviews (AI Challenger 2018 fsauor), as data.

Our data has no drink label, so 分量 fills the paper's 饮品评价 slot in D1; the paper's own D1
(with 饮品评价, used by the authors' published sample) is the domain `D1-paper`.
"""

SPEC = {
    "name": "masa",
    "family": "classification",
    "language": "zh",
    "targets": [
        {"name": "食品评价", "keywords": ["食品"], "cues": ["味道", "口味", "口感", "好吃", "难吃", "菜", "食材", "新鲜", "吃"]},
        {"name": "饮品评价", "keywords": ["饮品"], "cues": ["饮品", "饮料", "酒", "茶", "咖啡", "果汁", "奶"]},
        {"name": "分量", "keywords": ["分量", "份量"], "cues": ["分量", "份量", "量大", "量少", "量足", "一份", "吃饱", "吃不完"]},
        {"name": "价格水平", "keywords": ["价格"], "cues": ["价格", "贵", "便宜", "性价比", "实惠", "元", "块", "团购", "划算"]},
        {"name": "卫生情况", "keywords": ["卫生"], "cues": ["卫生", "干净", "脏", "整洁", "苍蝇", "头发"]},
        {"name": "服务人员态度", "keywords": ["服务"], "cues": ["服务", "服务员", "态度", "热情", "店员", "老板"]},
        {"name": "停车方便程度", "keywords": ["停车"], "cues": ["停车", "车位", "开车", "停车场"]},
        {"name": "交通便利程度", "keywords": ["交通"], "cues": ["交通", "地铁", "公交", "位置", "好找", "站"]},
        {"name": "排队等候情况", "keywords": ["排队", "等候"], "cues": ["排队", "等位", "等座", "取号", "等了", "排号"]},
        {"name": "点菜上菜速度", "keywords": ["点菜"], "cues": ["上菜", "点菜", "速度", "慢", "快"]},
        {"name": "装修情况", "keywords": ["装修"], "cues": ["装修", "环境", "风格", "装潢", "布置", "氛围"]},
        {"name": "嘈杂情况", "keywords": ["嘈杂"], "cues": ["吵", "安静", "嘈杂", "喧闹", "噪音"]},
    ],
    "domains": {
        "D1": ["食品评价", "分量", "价格水平", "卫生情况", "服务人员态度", "停车方便程度"],
        "D2": ["交通便利程度", "排队等候情况", "点菜上菜速度", "装修情况", "嘈杂情况"],
        "D1-paper": ["食品评价", "饮品评价", "价格水平", "卫生情况", "服务人员态度", "停车方便程度"],
    },
    "labels": [
        {"id": "positive", "text": "正面", "code": "1", "synonyms": ["积极", "正向"]},
        {"id": "neutral", "text": "中性", "code": "0", "synonyms": []},
        {"id": "negative", "text": "负面", "code": "-1", "synonyms": ["消极", "负向"]},
        {"id": "unmentioned", "text": "未提及", "code": "-2", "synonyms": []},
    ],
    "absent_label": "unmentioned",
    "empty_answer": "无",
    "instructions": [
        "请判断下面这条餐厅评论在以下各个方面的情感倾向：{targets}。每个方面的情感从{labels}中选择一个。",
        "阅读下面的餐厅评论，针对{targets}这几个方面，分别给出情感标签（{labels}）。",
        "对以下评论做多方面情感分析。方面：{targets}。可选标签：{labels}。",
    ],
    "input_prefix": "评论：",
    "json_keys": {"target": "方面", "value": "情感", "rationale": "理由"},
    "record": {"labels": "labels"},
    "splits": {"train": "train", "validation": "valid", "test": "test"},
    "card": {
        "pretty_name": "MASA (AI Challenger 2018 fine-grained restaurant review sentiment)",
        "language": "zh",
        "license": "other",
        "license_note": (
            "AI Challenger 2018 fsauor download protocol: non-commercial scientific research or teaching only; the "
            "organisers hold no IP in the review texts and give no warranties; the grant may be withdrawn at any time."
        ),
        "citation": "AI Challenger 2018, Fine-grained Sentiment Analysis of User Reviews (fsauor2018), https://challenger.ai/competition/fsauor2018",
    },
}
